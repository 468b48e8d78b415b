import pytest

from caprl_nb.errors import ConfigError, EmptyAnswerError, row_error
from caprl_nb.prompts import CAPTION_PROMPT, Sampling, ask_task, caption_task


def test_caption_task_is_the_authors_request() -> None:
    task = caption_task()
    assert task.prompt == CAPTION_PROMPT == "Please describe this image in detail."
    assert task.sampling == Sampling(temperature=1.0, top_p=1.0, repetition_penalty=1.0, max_tokens=2048)
    messages = task.messages("data:image/png;base64,AAAA")
    assert [m["role"] for m in messages] == ["user"]  # no system turn
    content = messages[0]["content"]
    assert [part["type"] for part in content] == ["image_url", "text"]  # image first
    assert content[1]["text"] == CAPTION_PROMPT


def test_overrides_and_params() -> None:
    base = caption_task()
    other = caption_task(max_tokens=64, temperature=0.0, seed=3)
    assert other.sampling.max_tokens == 64 and other.sampling.temperature == 0.0
    assert base.params() == caption_task().params()
    assert "seed" not in base.params() and other.params()["seed"] == 3
    assert base.params() != ask_task(CAPTION_PROMPT).params()  # the task is part of it


def test_an_empty_answer_fails_the_check() -> None:
    task = caption_task()
    assert task.check is not None
    assert task.check("A red square.", "stop", 2048) is None
    empty = task.check("  \n", "stop", 2048)
    assert isinstance(empty, EmptyAnswerError)
    assert row_error(empty).startswith("EmptyAnswerError: the server returned an empty answer")


@pytest.mark.parametrize(
    "kwargs",
    [{"max_tokens": 0}, {"temperature": 3.0}, {"top_p": 0.0}, {"prompt": "  "}, {"seed": "1"}],
)
def test_bad_sampling(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        caption_task(**kwargs)


def test_ask_needs_a_question() -> None:
    assert ask_task("How many cats?").output == "answer"
    with pytest.raises(ConfigError, match="question"):
        ask_task("")


def test_structured_request_dialects() -> None:
    from dataclasses import replace

    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    task = replace(caption_task(), json_schema=schema, schema_name="chart")
    modern = task.structured_request("0.32.0")
    assert modern["response_format"]["type"] == "json_schema"
    assert modern["response_format"]["json_schema"]["schema"] == schema
    assert task.structured_request(None) == modern  # unknown: assume the current form
    assert task.structured_request("0.11.2") == {"guided_json": schema}
    assert task.structured_request("0.12.0rc1+cpu") == modern
    assert caption_task().structured_request("0.32.0") == {}
    assert task.params() != caption_task().params()  # the schema is part of the request
