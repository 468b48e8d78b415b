"""Rows in, one result record per row out: concurrency, caching, retries, progress.

The batch runs on its own event loop in a worker thread, so it works the same from a script
and from inside Jupyter's running loop. Rows stream through ``concurrency`` workers pulling
from one iterator: at most ``concurrency`` requests in flight and as many prepared payloads
in memory, however many rows there are. Image decoding and resizing run in a thread pool, in
parallel with the requests in flight. Every finished row is written to the store at once,
so Ctrl-C (or a kernel interrupt) keeps everything finished and a re-run resumes.

A row never raises: its record carries the text or the error that names the cause and the
row's input. Only a server that cannot be reached at all stops the batch.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from caprl_nb import images
from caprl_nb.client import CapRLClient, ServerInfo
from caprl_nb.config import DEFAULT_SERVED_NAME, Settings
from caprl_nb.errors import CapRLError, RequestRejectedError, warn
from caprl_nb.models import ModelPreset, preset_for
from caprl_nb.prompts import Task
from caprl_nb.store import ResultStore

__all__ = ["BatchResults", "BatchRunner", "RowResult", "run_batch", "token_budget"]

# How long a server's self-description is trusted within one process.
_SERVER_MEMO_TTL = 300.0
_server_memo: dict[str, tuple[float, ServerInfo]] = {}


@dataclass(slots=True)
class RowResult:
    """The outcome of one row: ``text`` or ``error``, with where and how it came.

    Slotted and small: a batch holds one per row until it returns.
    """

    text: str | None = None
    error: str | None = None
    cached: bool = False
    model: str | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    attempts: int = 0
    input: str | None = None  # the row's input, described; kept for failed rows only


class BatchResults:
    """One batch's outcomes, held as columns: a few bytes per row beyond the texts themselves.

    Indexing or iterating gives :class:`RowResult` views; :meth:`columns` gives pandas-ready arrays.
    """

    _OBJECTS = ("text", "error", "model", "finish_reason", "input")

    def __init__(self, total: int) -> None:
        self.total = total
        for name in self._OBJECTS:
            setattr(self, name, [None] * total)
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
        self.model[i] = sys.intern(r.model) if r.model else None
        self.finish_reason[i] = sys.intern(r.finish_reason) if r.finish_reason else None
        self.cached[i] = r.cached
        self.latency_s[i] = np.nan if r.latency_s is None else r.latency_s
        self.prompt_tokens[i] = -1 if r.prompt_tokens is None else r.prompt_tokens
        self.completion_tokens[i] = -1 if r.completion_tokens is None else r.completion_tokens
        self.attempts[i] = r.attempts
        self.done[i] = True

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, i: int) -> RowResult:
        if not self.done[i]:
            return RowResult(error="not run")
        def known(value: int) -> int | None:
            return None if value < 0 else int(value)
        latency = float(self.latency_s[i])
        return RowResult(
            text=self.text[i], error=self.error[i], cached=bool(self.cached[i]),
            model=self.model[i], latency_s=None if latency != latency else latency,
            prompt_tokens=known(self.prompt_tokens[i]),
            completion_tokens=known(self.completion_tokens[i]),
            finish_reason=self.finish_reason[i], attempts=int(self.attempts[i]), input=self.input[i],
        )

    def __iter__(self) -> Iterator[RowResult]:
        return (self[i] for i in range(self.total))


def token_budget(task: Task, preset: ModelPreset, max_model_len: int | None) -> tuple[int | None, int]:
    """``(max image tokens, max_tokens)`` that keep one request inside ``max_model_len``.

    The image shrinks first; only when even a small image (256 tokens, or the preset's minimum)
    would not fit beside ``max_tokens`` is ``max_tokens`` lowered.
    """
    want = task.sampling.max_tokens
    if not max_model_len:
        return None, want
    room = max_model_len - task.prompt_token_estimate()
    floor = max(preset.min_image_tokens, min(256, room // 2))
    if room - want >= floor:
        return room - want, want
    max_tokens = room - floor
    if max_tokens < 1:
        msg = (
            f"The server's max_model_len ({max_model_len}) leaves no room for an image and an "
            "answer. Serve the model with a larger --max-model-len."
        )
        raise RequestRejectedError(msg)
    return floor, max_tokens


def _describe_error(exc: BaseException, description: str) -> str:
    text = str(exc) or type(exc).__name__
    if description and description not in text:
        text = f"{text} [input: {description}]"
    return f"{type(exc).__name__}: {text}"


class _Fatal(Exception):
    """Wraps the error that stops the whole batch (no server at all)."""


class BatchRunner:
    """Runs one task over many images; safe to read counters from another thread."""

    def __init__(self, task: Task, settings: Settings, *, cache: bool = True) -> None:
        self.task = task
        self.settings = settings
        self.store = ResultStore(settings.store_path) if cache else None
        self.done = 0
        self.failed = 0
        self.cached = 0
        self.retries = 0
        self.notes: list[str] = []
        self._info: ServerInfo | None = None
        self._info_lock: asyncio.Lock | None = None
        self._fatal: BaseException | None = None
        self._main: asyncio.Task[Any] | None = None
        self._model_for_keys = self._assumed_model()

    # -- server ---------------------------------------------------------------------------
    def _assumed_model(self) -> str | None:
        """The model cached rows can be looked up under before the server is asked, if any."""
        if self.settings.model:
            return self.settings.model
        memo = _server_memo.get(self.settings.base_url)
        if memo and time.monotonic() - memo[0] < _SERVER_MEMO_TTL:
            return memo[1].model
        if self.store is not None:
            last = self.store.last_server(self.settings.base_url)
            if last is not None:
                return str(last["model"])
        return None

    async def _server(self, client: CapRLClient) -> ServerInfo:
        """Ask the server about itself once, on the first row that needs it."""
        assert self._info_lock is not None
        async with self._info_lock:
            if self._fatal is not None:
                raise _Fatal from self._fatal
            if self._info is None:
                memo = _server_memo.get(self.settings.base_url)
                fresh = memo and time.monotonic() - memo[0] < _SERVER_MEMO_TTL
                wanted = self.settings.model
                if memo and fresh and (wanted is None or memo[1].model == wanted):
                    self._info = memo[1]
                else:
                    try:
                        self._info = await client.server_info(wanted)
                    except CapRLError as exc:
                        self._fatal = exc
                        raise _Fatal from exc
                    _server_memo[self.settings.base_url] = (time.monotonic(), self._info)
                    if self.store is not None:
                        i = self._info
                        self.store.remember_server(i.base_url, i.model, i.root, i.max_model_len, i.version)
                self._model_for_keys = self._info.model
                if self.task.json_schema is not None and self._info.version is None:
                    self.notes.append(
                        f"The server at {self.settings.base_url} did not report a vLLM version "
                        "(GET /version), so it may not support structured outputs and could ignore "
                        "the schema; answers are still validated against it."
                    )
            return self._info

    # -- one row --------------------------------------------------------------------------
    async def _row(self, value: object, client: CapRLClient, pool: ThreadPoolExecutor) -> RowResult:
        loop = asyncio.get_running_loop()
        description = images.describe(value)
        store = self.store
        known = None
        if store is not None:
            def known(st: images.FileStat) -> str | None:
                return store.file_hash(st.path, st.size, st.mtime_ns)
        try:
            source = await loop.run_in_executor(
                pool, lambda: images.identify(value, known_hash=known)
            )
            if store is not None and source.stat is not None:
                st = source.stat
                store.remember_file_hash(st.path, st.size, st.mtime_ns, source.sha256)
            if self._model_for_keys is None:
                await self._server(client)
            key = self.task.cache_key(source.sha256, self._model_for_keys or DEFAULT_SERVED_NAME)
            if store is not None:
                hit = store.get(key)
                if hit is not None:
                    return RowResult(
                        text=hit.text, cached=True, model=hit.model, latency_s=hit.latency_s,
                        prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens,
                        finish_reason=hit.finish_reason,
                    )
            info = await self._server(client)
            if info.model != self._model_for_keys:
                key = self.task.cache_key(source.sha256, info.model)
            preset = preset_for(info.root, info.model)
            image_budget, max_tokens = token_budget(self.task, preset, info.max_model_len)
            if max_tokens != self.task.sampling.max_tokens:
                note = (
                    f"max_tokens lowered from {self.task.sampling.max_tokens} to {max_tokens} so "
                    f"image and answer fit the server's max_model_len of {info.max_model_len}."
                )
                if note not in self.notes:
                    self.notes.append(note)
            payload = await loop.run_in_executor(
                pool, lambda: images.prepare(source, preset, max_image_tokens=image_budget)
            )
            s = self.task.sampling
            completion = await client.complete(
                model=info.model,
                messages=self.task.messages(payload.data_url),
                temperature=s.temperature,
                top_p=s.top_p,
                max_tokens=max_tokens,
                repetition_penalty=s.repetition_penalty,
                structured=self.task.structured_request(info.version),
                on_retry=self._count_retry,
            )
            del payload
            if store is not None:
                store.put(
                    key=key, task=self.task.name, image_sha256=source.sha256, input=description,
                    model=info.model, model_root=info.root, base_url=info.base_url,
                    server_version=info.version,
                    params={**self.task.params(), "sent_max_tokens": max_tokens},
                    text=completion.text, finish_reason=completion.finish_reason,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    latency_s=completion.latency_s,
                )
            return RowResult(
                text=completion.text, model=info.model, latency_s=completion.latency_s,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                finish_reason=completion.finish_reason, attempts=completion.attempts,
            )
        except _Fatal:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad row must not sink the batch: it becomes data
            return RowResult(error=_describe_error(exc, description), input=description)

    def _count_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        self.retries += 1

    # -- the batch ------------------------------------------------------------------------
    async def run(self, values: Iterable[object], total: int) -> BatchResults:
        self._main = asyncio.current_task()
        self._info_lock = asyncio.Lock()
        results = BatchResults(total)
        rows = iter(enumerate(values))
        workers = max(1, min(self.settings.concurrency, total))
        threads = max(2, min(8, (os.cpu_count() or 2)))

        async def worker() -> None:
            for position, value in rows:
                result = await self._row(value, client, pool)
                results.set(position, result)
                self.done += 1
                self.failed += result.error is not None
                self.cached += result.cached

        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="caprl-image") as pool:
            async with CapRLClient(self.settings) as client:
                tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
                try:
                    await asyncio.gather(*tasks)
                except _Fatal as exc:
                    assert exc.__cause__ is not None
                    raise exc.__cause__ from None
                finally:
                    # Stop the other workers and collect their outcome, so none is left running
                    # or reported as "never retrieved" (no TaskGroup before Python 3.11).
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
        return results

    def cancel(self) -> None:
        if self._main is not None:
            self._main.cancel()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def run_batch(
    values: Sequence[object],
    task: Task,
    settings: Settings,
    *,
    cache: bool = True,
    progress: bool = True,
    description: str | None = None,
) -> BatchResults:
    """Run ``task`` over ``values``; one result per value, in order (see :class:`BatchResults`).

    Blocks until done; Ctrl-C stops promptly, keeps what finished (it is in the store) and
    raises KeyboardInterrupt with a note on how to resume.
    """
    total = len(values)
    runner = BatchRunner(task, settings, cache=cache)
    outcome: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    def target() -> None:
        try:
            outcome["value"] = loop.run_until_complete(runner.run(values, total))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread below
            outcome["error"] = exc
        finally:
            loop.close()

    bar = _progress_bar(total, description or task.name, progress)
    thread = threading.Thread(target=target, name="caprl-batch", daemon=True)
    try:
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.1)
                _update(bar, runner)
        except KeyboardInterrupt:
            loop.call_soon_threadsafe(runner.cancel)
            thread.join(30)
            _update(bar, runner)
            msg = (
                f"Interrupted: {runner.done - runner.failed} of {total} rows finished and are "
                "stored. Run the same call again to resume where it stopped."
            )
            print(msg, file=sys.stderr)
            raise KeyboardInterrupt(msg) from None
        _update(bar, runner)
    finally:
        if bar is not None:
            bar.close()
        runner.close()
    if "error" in outcome:
        raise outcome["error"]
    for note in runner.notes:
        warn(note)
    return outcome["value"]


def _progress_bar(total: int, description: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"caprl {description}", unit="img", dynamic_ncols=True)


def _update(bar: Any, runner: BatchRunner) -> None:
    if bar is None:
        return
    if runner.done > bar.n:
        bar.update(runner.done - bar.n)
        bar.set_postfix(
            errors=runner.failed, cached=runner.cached, retries=runner.retries, refresh=False
        )
