"""The pandas face of a batch: many images in, a Series or DataFrame aligned on their index out.

``caption`` and ``ask`` are what ``df.caprl`` / ``s.caprl`` delegate to, and they can be called
directly on any sequence of images. The caller's objects are never modified.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from caprl_nb.batch import BatchResults, run_batch
from caprl_nb.config import resolve_settings
from caprl_nb.errors import BatchError, ConfigError, warn
from caprl_nb.prompts import Task, ask_task, caption_task

__all__ = [
    "DETAIL_COLUMNS", "as_series", "ask", "caption", "error_kinds", "failure_summary", "run_task",
    "settle_failures",
]

Errors = Literal["coerce", "raise"]

DETAIL_COLUMNS = (
    "error", "error_type", "cached", "model", "checkpoint", "base_url", "latency_s", "prompt_tokens",
    "completion_tokens", "finish_reason", "attempts",
)


def as_series(images: Any) -> pd.Series:
    """``images`` as an object Series with one image per row (a Series is returned as it is).

    One image, one row: a path, URL, ``bytes``/``bytearray``/``memoryview``, a PIL image, or
    an array of shape HxW or HxWxC (C in 1, 3, 4). Many images: a list, tuple, generator or any
    other iterable, an array of shape NxHxWxC (one row per image) or a 1-D object array, or a
    ``pyarrow.Array``/``ChunkedArray`` (binary, string or a Hugging Face ``Image`` struct).
    """
    if isinstance(images, pd.Series):
        return images
    pa = sys.modules.get("pyarrow")  # never imported: images cannot be an Arrow array
    if pa is not None and isinstance(images, (pa.Array, pa.ChunkedArray)):
        # Kept as Arrow (a binary column's cells are bytes, a null is pd.NA: that row's error).
        arrow: pd.Series = pd.Series(pd.arrays.ArrowExtensionArray(images))
        return arrow
    if isinstance(images, pd.DataFrame):
        msg = "Pass one column of images (a Series), or use df.caprl.caption('column')."
        raise ConfigError(msg)
    values = list(_rows(images))
    # Build with object dtype and set elements one by one: pd.Series([...]) would try to turn a
    # list of equally-shaped arrays into a 2-D block.
    series = pd.Series([None] * len(values), dtype=object)
    for i, value in enumerate(values):
        series.iat[i] = value
    return series


def _rows(images: Any) -> Iterable[Any]:
    if isinstance(images, np.ndarray):
        if images.ndim == 0 or images.ndim == 2 or (images.ndim == 3 and images.shape[2] in (1, 3, 4)):
            return [images]  # one image (a 0-d array fails as that row's error)
        if images.ndim == 3 and images.shape[0] in (3, 4):
            shape = "x".join(map(str, images.shape))
            msg = (
                f"An array of shape {shape} is ambiguous: one channels-first image or "
                f"{images.shape[0]} gray images. Pass arr.transpose(1, 2, 0) for one image, or "
                "list(arr) for one row per image."
            )
            raise ConfigError(msg)
        return list(images)  # 1-D (object) arrays, N gray HxW images, NxHxWxC batches
    if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike)) or _is_image(images):
        return [images]
    if isinstance(images, Iterable):
        return images  # lists, tuples, Index, generators, any iterable
    return [images]  # one value of another kind: that row's error says what it is


def _is_image(value: object) -> bool:
    image = sys.modules.get("PIL.Image")  # if Pillow was never imported, value cannot be an image
    return image is not None and isinstance(value, image.Image)


def run_task(
    images: Any,
    task: Task,
    *,
    details: bool = False,
    errors: Errors = "coerce",
    cache: bool = True,
    progress: bool = True,
    report: bool = True,
    **settings: Any,
) -> pd.Series | pd.DataFrame:
    """Run ``task`` over ``images`` (a Series or any sequence); see :func:`caption`.

    ``report=False`` leaves the failed-row summary to the caller (who adds failures of its own,
    as extraction does with parse and validation errors).
    """
    if errors not in ("coerce", "raise"):
        raise ConfigError(f"errors must be 'coerce' or 'raise', got {errors!r}.")
    series = as_series(images)
    resolved = resolve_settings(**settings)
    results = run_batch(
        series.array, task, resolved, cache=cache, progress=progress, description=task.name
    )
    frame = _frame(results, series.index, task.output)
    settle_failures(frame["error"], frame["error_type"], lambda: results.input, errors, report=report)
    if details:
        return frame
    answers: pd.Series = frame[task.output]  # named task.output
    return answers


def settle_failures(
    error: pd.Series,
    error_type: pd.Series,
    inputs: Callable[[], Sequence[str | None]],
    errors: Errors,
    *,
    report: bool = True,
) -> None:
    """The ``errors=`` policy over a finished batch's ``error`` and ``error_type`` columns.

    ``"raise"``: one :class:`BatchError` carrying every failed row (``inputs()`` describes each
    row's input; it is only called then). ``"coerce"``: one summary warning, unless
    ``report=False``.
    """
    failed = error.notna()
    if not failed.any():
        return
    if errors == "raise":
        cases = pd.DataFrame(
            {"input": list(inputs()), "error": error, "error_type": error_type}, index=error.index
        )
        raise BatchError(cases[failed.to_numpy()], total=len(error))
    if report:
        warn(failure_summary(error[failed], error_type[failed]))


def _frame(results: BatchResults, index: pd.Index, output: str) -> pd.DataFrame:
    def counts(values: np.ndarray) -> pd.arrays.IntegerArray:
        return pd.arrays.IntegerArray(values, mask=values < 0)

    latency = results.latency_s
    frame: pd.DataFrame = pd.DataFrame(
        {
            output: pd.array(results.text, dtype="string"),
            "error": pd.array(results.error, dtype="string"),
            "error_type": pd.array(results.error_type, dtype="string"),
            "cached": results.cached,
            "model": pd.array(results.model, dtype="string"),
            "checkpoint": pd.array(results.checkpoint, dtype="string"),
            "base_url": pd.array(results.base_url, dtype="string"),
            "latency_s": pd.arrays.FloatingArray(latency, mask=np.isnan(latency)),
            "prompt_tokens": counts(results.prompt_tokens),
            "completion_tokens": counts(results.completion_tokens),
            "finish_reason": pd.array(results.finish_reason, dtype="string"),
            "attempts": pd.array(results.attempts, dtype="Int64"),
        },
        index=index,
    )
    return frame


def error_kinds(error_types: Iterable[object]) -> str:
    """``"3 ImageDecodeError, 1 ServerBusyError"``: failed rows counted by their ``error_type``."""
    kinds = Counter(str(kind) for kind in error_types)
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


def failure_summary(errors: pd.Series, error_types: pd.Series) -> str:
    """The warning for failed rows (``errors`` and their ``error_types``, failed rows only)."""
    why = error_kinds(error_types)
    first = str(errors.iloc[0])
    return (
        f"{len(errors)} row(s) failed ({why}); they are NA. First: {first}. "
        "Pass details=True to see every row's error, or errors='raise' to get them all as an exception."
    )


def caption(
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
    """Caption every image with CapRL's own request; a Series named ``caption``, NA where a row failed.

    ``images``: a Series (its index is kept) or any sequence of paths, URLs, bytes, data URLs,
    PIL images or arrays. ``details=True`` returns a DataFrame with ``caption`` plus
    ``error``, ``error_type`` (the :mod:`caprl_nb.errors` class name), ``cached``, ``model``
    (the served alias), ``checkpoint`` (the weights that answered), ``base_url`` (the server
    that answered: one of several when ``base_url=`` names several), ``latency_s``,
    ``prompt_tokens``, ``completion_tokens``,
    ``finish_reason`` and ``attempts``. ``errors="raise"`` raises one :class:`BatchError`
    carrying every failed row after the whole batch ran (everything good is stored).
    ``seed`` is sent when given (and is part of the cache key, like every sampling value).
    Settings (``base_url``, ``model``, ``api_key``, ``concurrency``, ``read_timeout``,
    ``connect_timeout``, ``max_retries``, ``home``, ``preset``, ``wait_for_server``,
    ``outage_timeout``, ``url_timeout``, ``offline``) override :func:`configure` and the environment: see
    :mod:`caprl_nb.config`.
    """
    task = caption_task(
        prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
        repetition_penalty=repetition_penalty, seed=seed,
    )
    return run_task(
        images, task, details=details, errors=errors, cache=cache, progress=progress, **settings
    )


def ask(
    images: Any,
    question: str,
    *,
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
    """Ask ``question`` about every image; a Series named ``answer`` (options as :func:`caption`)."""
    task = ask_task(
        question, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
        repetition_penalty=repetition_penalty, seed=seed,
    )
    return run_task(
        images, task, details=details, errors=errors, cache=cache, progress=progress, **settings
    )
