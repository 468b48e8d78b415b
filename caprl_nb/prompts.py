"""Task presets: what we ask the model, and the exact request the CapRL authors send.

The caption request is the authors' own: one user message holding the image, then the text
"Please describe this image in detail."; no system turn; temperature 1.0, top_p 1.0,
repetition_penalty 1.0, max_tokens 2048. Every sampling value can be overridden per call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from caprl_nb.errors import AnswerError, ConfigError, EmptyAnswerError

__all__ = ["CAPTION_PROMPT", "Sampling", "Task", "ask_task", "caption_task", "nonempty"]

CAPTION_PROMPT = "Please describe this image in detail."


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters sent with every request (the CapRL authors' defaults)."""

    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_tokens: int = 2048
    seed: int | None = None  # sent only when set; vLLM then samples reproducibly

    def __post_init__(self) -> None:
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ConfigError(f"seed must be an integer or None, got {self.seed!r}.")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be a positive integer, got {self.max_tokens!r}.")
        if not 0 <= self.temperature <= 2:
            raise ConfigError(f"temperature must be between 0 and 2, got {self.temperature!r}.")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}.")
        if not self.repetition_penalty > 0:
            raise ConfigError(
                f"repetition_penalty must be positive, got {self.repetition_penalty!r}."
            )


@dataclass(frozen=True)
class Task:
    """One kind of request: a name, the text that follows the image, and sampling."""

    name: str
    prompt: str
    sampling: Sampling = field(default_factory=Sampling)
    output: str = "caption"  # the name of the result column
    # A JSON schema the answer must satisfy (vLLM structured outputs); see structured_request().
    json_schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    # check(text, finish_reason, max_tokens_sent) -> why the answer is unusable, or None.
    # A row whose answer fails it is a failed row: never stored as an answer, retried next run.
    check: Callable[[str, str | None, int], AnswerError | None] | None = field(
        default=None, compare=False, repr=False
    )

    def messages(self, image_url: str) -> list[dict[str, Any]]:
        """The chat messages: a single user turn, image first, then the text; no system turn."""
        return [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_url}},
                    {"type": "text", "text": self.prompt},
                ],
            }
        ]

    def params(self) -> dict[str, Any]:
        """What the caller asked for besides the image (provenance; the cache key is built from
        what was actually sent, see :mod:`caprl_nb.plan`)."""
        sampling = asdict(self.sampling)
        if sampling["seed"] is None:
            del sampling["seed"]
        params: dict[str, Any] = {"task": self.name, "prompt": self.prompt, **sampling}
        if self.json_schema is not None:
            params["json_schema"] = self.json_schema
        return params

    def structured_request(self, server_version: str | None) -> dict[str, Any]:
        """Request fields that constrain the answer to ``json_schema``, in the server's dialect.

        vLLM >= 0.12 takes OpenAI's ``response_format`` ``{"type": "json_schema", ...}``; older
        servers took ``guided_json`` (newer ones ignore it silently and answer unconstrained).
        Returns ``{}`` when the task has no schema; the keys go into the request body.
        """
        if self.json_schema is None:
            return {}
        if server_version is not None and _version_tuple(server_version) < (0, 12):
            return {"guided_json": self.json_schema}
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": self.schema_name, "schema": self.json_schema, "strict": True},
            }
        }

    def prompt_token_estimate(self) -> int:
        """Text tokens of the turn around the image (chat template included), rounded up."""
        return len(self.prompt.encode()) // 2 + 32


def _version_tuple(version: str) -> tuple[int, ...]:
    """"0.11.2", "0.12.0rc1+cpu" -> (0, 11, 2), (0, 12, 0); a part without digits counts as 0."""
    parts = []
    for piece in version.split("+")[0].split(".")[:3]:
        match = re.match(r"\d+", piece)
        parts.append(int(match.group()) if match else 0)
    return tuple(parts)


def _sampling(
    max_tokens: int | None, temperature: float | None, top_p: float | None,
    repetition_penalty: float | None, seed: int | None = None,
) -> Sampling:
    given: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "repetition_penalty": repetition_penalty,
        "seed": seed,
    }
    return Sampling(**{k: v for k, v in given.items() if v is not None})


def nonempty(text: str, finish_reason: str | None, max_tokens: int) -> EmptyAnswerError | None:
    """The check every free-text task runs: an empty completion is not an answer."""
    if text.strip():
        return None
    return EmptyAnswerError(
        f"the server returned an empty answer (finish_reason={finish_reason!r}). "
        "Check the server's log; the row is retried on the next run."
    )


def caption_task(
    prompt: str | None = None,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    seed: int | None = None,
) -> Task:
    """CapRL's dense caption (or your own prompt in its place)."""
    text = CAPTION_PROMPT if prompt is None else prompt
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("prompt must be a non-empty string; leave it out for CapRL's own prompt.")
    sampling = _sampling(max_tokens, temperature, top_p, repetition_penalty, seed)
    return Task("caption", text, sampling, "caption", check=nonempty)


def ask_task(
    question: str,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    seed: int | None = None,
) -> Task:
    """A free-form question about each image; the result column is ``answer``."""
    if not isinstance(question, str) or not question.strip():
        raise ConfigError("question must be a non-empty string, e.g. 'How many people are there?'.")
    sampling = _sampling(max_tokens, temperature, top_p, repetition_penalty, seed)
    return Task("ask", question, sampling, "answer", check=nonempty)
