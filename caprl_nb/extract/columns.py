"""Structured answers as typed columns: ``extract`` and ``chart_table``.

Both build a :class:`~caprl_nb.prompts.Task` carrying the JSON schema and hand it to
:func:`caprl_nb.frames.run_task`, so they share the batch machinery of captioning: concurrency,
retries, progress, and the result store (whose key includes the schema). The schema is sent as
vLLM structured outputs (``Task.structured_request`` picks the server's dialect); each answer is
then parsed tolerantly and validated strictly (:mod:`caprl_nb.extract.parse`,
:mod:`caprl_nb.extract.schema`). A row that fails anywhere (request, parse, cut off at
``max_tokens``, validation) is NA with its reason in ``error``; nothing raises halfway.

Sampling defaults differ from captioning: ``temperature=0.0`` (greedy). Extraction has one
right answer per field; sampling at CapRL's caption temperature of 1.0 would occasionally pick
a less likely digit or name, and two runs of the same call would disagree (the store would
keep whichever came first). Pass ``temperature=`` to sample anyway. ``max_tokens`` defaults to
2048, enough for a chart table of a few hundred values.
"""

from __future__ import annotations

import json
from typing import Any, Literal, cast

import pandas as pd

from caprl_nb import frames, images
from caprl_nb.cells import optional
from caprl_nb.errors import AnswerError, ConfigError, row_error
from caprl_nb.extract.charts import CHART_PROMPT, CHART_SCHEMA, to_table
from caprl_nb.extract.pages import DEFAULT_MAX_PDF_BYTES, DEFAULT_MAX_PDF_PAGES, expand_pdfs
from caprl_nb.extract.parse import parse_answer
from caprl_nb.extract.schema import Schema, as_schema, column
from caprl_nb.prompts import Sampling, Task

__all__ = [
    "EXTRACT_PROMPT", "chart_answer_table", "chart_table", "chart_task", "extract", "extraction_task",
]

Errors = Literal["coerce", "raise"]

EXTRACT_PROMPT = (
    "Extract the information this JSON schema describes from the image. Answer with one JSON "
    "object that matches the schema and nothing else. Copy text exactly as it appears; write "
    "numbers as plain JSON numbers, without thousands separators, currency symbols or units."
)
DEFAULT_MAX_TOKENS = 2048
DEFAULT_TEMPERATURE = 0.0
RAW = "raw"  # the column holding the model's text with details=True


def extraction_task(
    schema: Any,
    *,
    prompt: str | None = None,
    name: str = "extract",
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    seed: int | None = None,
) -> Task:
    """The Task ``extract`` sends: ``prompt`` (default :data:`EXTRACT_PROMPT`) plus the schema.

    The schema travels twice: in the text, so the model knows the field names and meanings,
    and as ``response_format``, so a vLLM server constrains the answer to it. The task's check
    parses and validates each answer before it is stored: an answer that fails is a failed
    row, retried on the next run, never replayed from the store.
    """
    spec = as_schema(schema)
    text = EXTRACT_PROMPT if prompt is None else prompt
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("prompt must be a non-empty string; leave it out for the default.")
    if name == "extract":
        text = f"{text}\nJSON schema: {json.dumps(spec.json_schema, separators=(',', ':'))}"
    sampling = Sampling(
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        temperature=DEFAULT_TEMPERATURE if temperature is None else temperature,
        top_p=Sampling.top_p if top_p is None else top_p,
        repetition_penalty=(
            Sampling.repetition_penalty if repetition_penalty is None else repetition_penalty
        ),
        seed=seed,
    )
    def check(answer: str, finish_reason: str | None, sent_max_tokens: int) -> AnswerError | None:
        parsed = parse_answer(answer, finish_reason=finish_reason, max_tokens=sent_max_tokens)
        if parsed.value is None:
            return parsed.problem
        return spec.validated(parsed.value)[1]

    return Task(name, text, sampling, RAW, json_schema=spec.json_schema, schema_name=spec.name,
                check=check)


def _run(
    images_: Any,
    spec: Schema,
    task: Task,
    *,
    details: bool,
    errors: Errors,
    cache: bool,
    progress: bool,
    settings: dict[str, Any],
) -> tuple[pd.DataFrame, list[dict[str, Any] | None]]:
    """The extraction frame (page, fields, error[, raw, provenance]) and each row's answer."""
    if errors not in ("coerce", "raise"):
        raise ConfigError(f"errors must be 'coerce' or 'raise', got {errors!r}.")
    provenance = [c for c in frames.DETAIL_COLUMNS if c != "error"]
    own = ["page", "error", *([RAW, *provenance] if details else [])]
    clash = sorted(set(spec.dtypes) & set(own))
    if clash:
        msg = (
            f"The schema's field(s) {clash} clash with the result's own columns {own}. Rename "
            "them (another property name, or a pydantic Field(alias=...))."
        )
        raise ConfigError(msg)
    source = frames.as_series(images_)
    expanded = expand_pdfs(
        source.array,
        max_pages=settings.pop("max_pdf_pages", DEFAULT_MAX_PDF_PAGES),
        max_bytes=settings.pop("max_pdf_bytes", DEFAULT_MAX_PDF_BYTES),
    )
    n = len(expanded.values)
    sent = [i for i in range(n) if i not in expanded.problems]
    batch = pd.Series([None] * len(sent), dtype=object)
    for j, i in enumerate(sent):
        batch.iat[j] = expanded.values[i]
    columns = [RAW, *frames.DETAIL_COLUMNS]
    if sent:
        ran = frames.run_task(batch, task, details=True, errors="coerce", cache=cache,
                              progress=progress, report=False, **settings)
        ran.index = pd.Index(sent)
        raw = ran.reindex(pd.RangeIndex(n))
    else:
        raw = pd.DataFrame({c: pd.Series([None] * n, dtype=object) for c in columns})
    raw["cached"] = raw["cached"].astype("boolean").fillna(False).astype(bool)

    answers: list[dict[str, Any] | None] = [None] * n
    row_errors: list[str | None] = [optional(e) for e in raw["error"]]
    row_types: list[str | None] = [optional(t) for t in raw["error_type"]]

    def failed(i: int, problem: BaseException) -> None:
        row_errors[i], row_types[i] = row_error(problem), type(problem).__name__

    for i, exc in expanded.problems.items():
        failed(i, exc)
    for i in range(n):
        text = optional(raw[RAW].iat[i])
        if row_errors[i] is not None or text is None:
            continue
        used = optional(raw["completion_tokens"].iat[i])
        parsed = parse_answer(
            str(text),
            finish_reason=optional(raw["finish_reason"].iat[i]),
            max_tokens=int(used) if used is not None else task.sampling.max_tokens,
        )
        if parsed.value is None:
            assert parsed.problem is not None
            failed(i, parsed.problem)
            continue
        answers[i], problem = spec.validated(parsed.value)
        if problem is not None:
            failed(i, problem)

    index = expanded.index(source.index)
    out: dict[str, Any] = {}
    if expanded.any_pdf:
        out["page"] = expanded.page_column()
    for name, dtype in spec.dtypes.items():
        out[name] = column([a.get(name) if a else None for a in answers], dtype)
    out["error"] = pd.array(row_errors, dtype="string")
    error_type = pd.array(row_types, dtype="string")
    if details:
        out["error_type"] = error_type
        for name in columns:
            if name not in out:
                out[name] = raw[name].array
    frame = pd.DataFrame(out, index=index)

    frames.settle_failures(
        frame["error"],
        pd.Series(error_type, index=index),
        lambda: [
            images.describe(source.iat[p]) + (f" page {pg}" if pg is not None else "")
            for p, pg in zip(expanded.positions, expanded.pages)
        ],
        errors,
    )
    return frame, answers


def extract(
    images: Any,
    schema: Any,
    *,
    prompt: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    seed: int | None = None,
    details: bool = False,
    errors: Errors = "coerce",
    cache: bool = True,
    progress: bool = True,
    **settings: Any,
) -> pd.DataFrame:
    """Fill ``schema`` from every image: one column per top-level field, plus ``error``.

    ``schema`` is a pydantic model class or a JSON-schema dict for one object. Columns are
    typed as the schema says (integer -> Int64, number -> Float64, boolean -> boolean,
    string -> string; nested objects and arrays stay Python objects) and aligned on the
    images' index. A row whose request, parse or validation failed has NA fields and its
    reason in ``error`` (e.g. ``"ValidationError: field 'total': ..."`` or
    ``"Truncated: cut off at max_tokens=256; raise max_tokens ..."``).

    PDFs (paths ending in ``.pdf``, or PDF bytes) expand to one row per page: the result
    gains a ``page`` column (1-based; NA for other rows) and repeats the row's label once per
    page. ``max_pdf_pages=`` (default 200) caps the pages read from one PDF (a warning names
    each longer file); ``max_pdf_bytes=`` (default 256 MiB) the size of one PDF (a bigger one
    is a failed row). Pages are rendered as the batch reaches them. ``details=True`` adds
    ``error_type`` (the :mod:`caprl_nb.errors` class of each failure), the model's text
    (``raw``) and provenance (``cached``, ``model``, ``checkpoint``, ``latency_s``, tokens,
    ``finish_reason``, ``attempts``). Sampling defaults to ``temperature=0.0`` and
    ``max_tokens=2048`` (see the module docstring); ``errors``, ``cache``, ``progress`` and the
    server settings work as in :func:`caprl_nb.caption`.
    """
    spec = as_schema(schema)
    task = extraction_task(
        spec, prompt=prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
        repetition_penalty=repetition_penalty, seed=seed,
    )
    frame, _answers = _run(images, spec, task, details=details, errors=errors, cache=cache,
                           progress=progress, settings=settings)
    return frame


def chart_table(
    images: Any,
    *,
    prompt: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    seed: int | None = None,
    details: bool = False,
    errors: Errors = "coerce",
    cache: bool = True,
    progress: bool = True,
    **settings: Any,
) -> pd.Series | pd.DataFrame:
    """Each chart's underlying data as a DataFrame; a Series named ``table`` aligned on the index.

    A table's first column holds the x values (named after the x-axis label), then one
    column per series, numbers parsed (``"1,234"``, ``"12%"``, ``"(5)"``, ``"−3"``) into
    numeric dtypes; ``table.attrs`` holds ``title``, ``x_label``, ``y_label``, ``units``
    (see :mod:`caprl_nb.extract.charts`). Failed rows are None; ``details=True`` returns a
    DataFrame with ``table``, ``title``, ``x_label``, ``y_label``, ``units``, ``error``, the
    model's text and provenance. :func:`caprl_nb.extract.concat_tables` stacks the tables.
    Options as :func:`extract`.
    """
    spec = as_schema(CHART_SCHEMA)
    task = chart_task(
        spec, prompt=prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
        repetition_penalty=repetition_penalty, seed=seed,
    )
    frame, answers = _run(images, spec, task, details=details, errors=errors, cache=cache,
                          progress=progress, settings=settings)
    tables = pd.Series([None] * len(frame), index=frame.index, dtype=object, name="table")
    for i, answer in enumerate(answers):
        if answer is not None:
            tables.iat[i] = cast(Any, to_table(answer))  # a DataFrame in an object Series
    if not details:
        return tables
    out = frame.drop(columns=["x", "series"])
    out.insert(1 if "page" in out.columns else 0, "table", tables)
    return out


def chart_task(spec: Schema | None = None, *, prompt: str | None = None, **sampling: Any) -> Task:
    """The Task :func:`chart_table` sends (``sampling``: ``max_tokens``, ``temperature``, ...)."""
    return extraction_task(
        as_schema(CHART_SCHEMA) if spec is None else spec,
        prompt=CHART_PROMPT if prompt is None else prompt, name="chart_table", **sampling,
    )


def chart_answer_table(text: str) -> pd.DataFrame:
    """The table in one answer to :func:`chart_task` that passed the task's check (as a row of
    :func:`chart_table` would hold it). Raises the answer's ParseError or ValidationError."""
    parsed = parse_answer(text)
    if parsed.value is None:
        assert parsed.problem is not None
        raise parsed.problem
    values, problem = as_schema(CHART_SCHEMA).validated(parsed.value)
    if values is None:
        assert problem is not None
        raise problem
    return to_table(values)
