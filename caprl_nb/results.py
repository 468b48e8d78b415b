"""One batch's outcomes: a record per row (:class:`RowResult`) and the columns a whole batch
keeps (:class:`BatchResults`, a few bytes per row beyond the texts)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from caprl_nb.errors import row_error
from caprl_nb.store import StoredResult

__all__ = ["BatchResults", "RowResult"]


@dataclass(slots=True)
class RowResult:
    """The outcome of one row: ``text`` or ``error`` (with ``error_type``), with where and how it came.

    Slotted and small: a batch holds one per row until it returns. ``key``, ``base_url``,
    ``server_version`` and ``created_at`` (the stored record's provenance) are filled for a
    row that was answered, but a batch does not keep them (:func:`caprl_nb.rows.run_one` returns them).
    """

    text: str | None = None
    error: str | None = None
    error_type: str | None = None  # the caprl_nb.errors class name of ``error`` (see row_error)
    cached: bool = False
    model: str | None = None  # the served alias the request named
    checkpoint: str | None = None  # the weights that answered (see caprl_nb.plan)
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    attempts: int = 0
    input: str | None = None  # the row's input, described; kept for failed rows only
    key: str | None = None  # the store key of the answer
    base_url: str | None = None
    server_version: str | None = None
    created_at: float | None = None  # when the answer was stored (None: it was not)

    @classmethod
    def from_store(cls, hit: StoredResult, checkpoint: str) -> RowResult:
        """A row answered by the store: the stored answer and its provenance."""
        return cls(
            text=hit.text, cached=True, model=hit.model, checkpoint=checkpoint, latency_s=hit.latency_s,
            prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens,
            finish_reason=hit.finish_reason, key=hit.key, base_url=hit.base_url,
            server_version=hit.server_version, created_at=hit.created_at,
        )

    @classmethod
    def failed(cls, exc: BaseException, description: str) -> RowResult:
        """A failed row: ``exc``'s text naming the row's input, its class as ``error_type``."""
        text = row_error(exc)
        if description and description not in text:
            text = f"{text} [input: {description}]"
        return cls(error=text, error_type=type(exc).__name__, input=description)


def _strings(total: int) -> list[str | None]:
    return [None] * total


class BatchResults:
    """One batch's outcomes, held as columns: a few bytes per row beyond the texts themselves.

    Indexing or iterating gives :class:`RowResult` views; the attributes are pandas-ready arrays.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.text = _strings(total)
        self.error = _strings(total)
        self.error_type = _strings(total)
        self.model = _strings(total)
        self.checkpoint = _strings(total)
        self.base_url = _strings(total)  # the server that answered (or answered it first, if cached)
        self.finish_reason = _strings(total)
        self.input = _strings(total)
        self.cached = np.zeros(total, dtype=bool)
        self.latency_s = np.full(total, np.nan)
        # -1 marks "unknown" (a failed row, or a server that reported no usage).
        self.prompt_tokens = np.full(total, -1, dtype=np.int64)
        self.completion_tokens = np.full(total, -1, dtype=np.int64)
        self.attempts = np.zeros(total, dtype=np.int32)
        self.done = np.zeros(total, dtype=bool)

    def set(self, i: int, r: RowResult) -> None:
        self.text[i] = r.text
        self.error[i] = r.error
        self.input[i] = r.input
        # A handful of distinct values repeated on every row: share one string object.
        self.error_type[i] = sys.intern(r.error_type) if r.error_type else None
        self.model[i] = sys.intern(r.model) if r.model else None
        self.checkpoint[i] = sys.intern(r.checkpoint) if r.checkpoint else None
        self.base_url[i] = sys.intern(r.base_url) if r.base_url else None
        self.finish_reason[i] = sys.intern(r.finish_reason) if r.finish_reason else None
        self.cached[i] = r.cached
        self.latency_s[i] = np.nan if r.latency_s is None else r.latency_s
        self.prompt_tokens[i] = -1 if r.prompt_tokens is None else r.prompt_tokens
        self.completion_tokens[i] = -1 if r.completion_tokens is None else r.completion_tokens
        self.attempts[i] = r.attempts
        self.done[i] = True

    def set_stored(self, positions: list[int], hits: list[StoredResult], checkpoint: str) -> None:
        """Rows answered by the store, many at once: as ``set(i, RowResult.from_store(hit,
        checkpoint))`` for each, without a RowResult per row."""
        text, model, finish, checkpoints = self.text, self.model, self.finish_reason, self.checkpoint
        servers = self.base_url
        checkpoint = sys.intern(checkpoint)
        latency, prompt, completion = [], [], []
        for i, hit in zip(positions, hits):
            text[i] = hit.text
            model[i] = sys.intern(hit.model) if hit.model else None
            finish[i] = sys.intern(hit.finish_reason) if hit.finish_reason else None
            checkpoints[i] = checkpoint
            servers[i] = sys.intern(hit.base_url) if hit.base_url else None
            latency.append(hit.latency_s)
            prompt.append(-1 if hit.prompt_tokens is None else hit.prompt_tokens)
            completion.append(-1 if hit.completion_tokens is None else hit.completion_tokens)
        where = np.asarray(positions, dtype=np.intp)
        for column in (self.error, self.error_type, self.input):
            for i in positions:
                column[i] = None
        self.cached[where] = True
        self.latency_s[where] = np.asarray(latency, dtype=float)  # None -> NaN
        self.prompt_tokens[where] = prompt
        self.completion_tokens[where] = completion
        self.attempts[where] = 0
        self.done[where] = True

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, i: int) -> RowResult:
        if not self.done[i]:
            return RowResult(error="not run")

        def known(value: int) -> int | None:
            return None if value < 0 else int(value)

        latency = float(self.latency_s[i])
        return RowResult(
            text=self.text[i], error=self.error[i], error_type=self.error_type[i],
            cached=bool(self.cached[i]), model=self.model[i], checkpoint=self.checkpoint[i],
            latency_s=None if np.isnan(latency) else latency,
            prompt_tokens=known(self.prompt_tokens[i]),
            completion_tokens=known(self.completion_tokens[i]),
            finish_reason=self.finish_reason[i], attempts=int(self.attempts[i]), input=self.input[i],
            base_url=self.base_url[i],
        )

    def __iter__(self) -> Iterator[RowResult]:
        return (self[i] for i in range(self.total))
