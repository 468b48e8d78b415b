"""Rows in, one result record per row out: concurrency, caching, retries, progress.

The batch runs on its own event loop in a worker thread, so it works the same from a script
and from inside Jupyter's running loop. Rows stream through ``concurrency`` workers pulling
from one iterator: at most ``concurrency`` requests in flight and as many prepared payloads
in memory, however many rows there are. Image decoding and resizing run in a thread pool, in
parallel with the requests in flight; URL downloads run in a pool of their own (one thread per
worker), so they are not limited by the image threads. Every finished row is written to the store
by a writer thread (:mod:`caprl_nb.writeback`), all of them before the call returns, so Ctrl-C (or
a kernel interrupt) keeps everything finished and a re-run resumes. ``base_url=`` may name
several servers (:mod:`caprl_nb.fleet`). The per-row records are in :mod:`caprl_nb.results`.

A row never raises: its record carries the text or the error that names the cause and the
row's input. Only a server that cannot be reached at the start stops the call (unless
``wait_for_server=`` says to wait for it). A server that stops answering mid-batch is waited for
up to ``outage_timeout`` seconds by the whole batch at once (:mod:`caprl_nb.health`); if it does
not come back, every unfinished row fails with one error naming it, in seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import gc
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from caprl_nb import images
from caprl_nb.blocking import STOP_WAIT_S, run_blocking
from caprl_nb.client import CapRLClient, ServerInfo
from caprl_nb.config import Settings
from caprl_nb.errors import (
    AnswerError,
    ConfigError,
    NotStoredError,
    ServerUnavailableError,
    StoreError,
    row_error,
    warn,
)
from caprl_nb.fleet import Fleet, Lane, ServerMoved, connect_all, open_lane
from caprl_nb.health import ServerWatch
from caprl_nb.pacing import Pacer
from caprl_nb.plan import RequestPlan, legacy_key, plan_request, token_budget
from caprl_nb.prompts import Task, nonempty
from caprl_nb.results import BatchResults, RowResult
from caprl_nb.store import ResultStore, StoredResult
from caprl_nb.writeback import WriteBehind

__all__ = ["BatchResults", "BatchRunner", "RowResult", "run_batch", "token_budget"]


def _unusable(task: Task, text: str, finish_reason: str | None, max_tokens: int) -> AnswerError | None:
    """Why an answer must not be kept (empty, or failing the task's own check), or None."""
    empty = nonempty(text, finish_reason, max_tokens)
    if empty is not None:
        return empty
    return task.check(text, finish_reason, max_tokens) if task.check is not None else None


_UNKNOWN = object()
# Rows looked up in the store at once before they reach a worker (see BatchRunner._unstored).
_LOOKUP_CHUNK = 2048


@contextlib.contextmanager
def _collector_held() -> Iterator[None]:
    """Python's cyclic garbage collector held off (if it is on) while a chunk is looked up.

    A chunk allocates thousands of small objects that form no cycles (stats, rows read from
    the store, stored answers). Every 700 such allocations start a collection, and every few
    thousand a full one that walks the whole heap: about 90 ms in a process that imported
    pandas and openai, twice a cached re-run's own work on 20,000 rows. Held off, nothing is
    lost (a chunk makes no garbage only a collection could free), and the next allocation after
    the chunk collects once. The switch is process-wide, so only a collector this turned off
    is turned back on.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _value_at(values: Iterable[object], i: int) -> object:
    """Row ``i`` of a sequence or array (for its description); _UNKNOWN for a consumed iterator."""
    try:
        return values[i]  # type: ignore[index]  # a list, an ndarray or a pandas array
    except (TypeError, IndexError, KeyError):
        return _UNKNOWN


class BatchRunner:
    """Runs one task over many images; safe to read counters from another thread.

    Nothing is answered from the store before the server has said which checkpoint it serves
    (or, with ``offline=True``, before the checkpoint last seen at that URL is known): results
    are keyed by that checkpoint and the request as sent (:mod:`caprl_nb.plan`).
    """

    def __init__(self, task: Task, settings: Settings, *, cache: bool = True) -> None:
        self.task = task
        self.settings = settings
        self.store = ResultStore(settings.store_path) if cache else None
        if settings.offline and self.store is None:
            msg = "offline=True answers from the result store only; it cannot run with cache=False."
            raise ConfigError(msg)
        self.done = 0
        self.failed = 0
        self.cached = 0
        self.retries = 0
        self.notes: list[str] = []
        self.status: str | None = None  # what the batch is waiting for, if anything
        self.plan: RequestPlan | None = None
        self.watch: ServerWatch | None = None  # the first server's (the only one's, usually)
        self.pacer: Pacer | None = None  # the first server's in-flight limit (see pacing)
        self.fleet: Fleet | None = None  # every server of the call (see caprl_nb.fleet)
        self._legacy_aliases: list[str] = []
        self._writes: WriteBehind | None = None
        self._main: asyncio.Task[Any] | None = None
        self._cancelled = False

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _memo(self, write: Callable[..., object], *args: Any) -> None:
        """A write that only saves work later (the server's identity, a file's hash): a store
        that cannot take it costs a note, never the batch or a row."""
        try:
            write(*args)
        except StoreError as exc:
            self._note(f"The result store could not keep a memo (a re-run redoes that work): {exc}")

    def _say(self, text: str) -> None:
        self.status = text
        print(f"caprl: {text}", file=sys.stderr, flush=True)

    # -- server ---------------------------------------------------------------------------
    async def _connect(self, client: CapRLClient) -> ServerInfo:
        """Who answers: the server's own account of itself, waited for up to wait_for_server."""
        s = self.settings
        if s.offline:
            return self._offline_identity()
        info = await client.discover(s.model, s.wait_for_server, self._say)
        self.status = None
        if self.store is not None:
            self._memo(self.store.remember_server, info)
        return info

    async def _connect_all(self, clients: list[CapRLClient]) -> list[ServerInfo | None]:
        """Every server's account of itself (see :func:`caprl_nb.fleet.connect_all`)."""
        if self.settings.offline:
            return [await self._connect(clients[0])] + [None] * (len(clients) - 1)
        return await connect_all(clients, self._connect, self._note, self.settings.outage_timeout)

    def _offline_identity(self) -> ServerInfo:
        assert self.store is not None
        seen = None
        for url in self.settings.base_urls:
            seen = self.store.last_server(url)
            if seen is not None:
                break
        if seen is None:
            msg = (
                f"offline=True answers from the store as the checkpoint last served at "
                f"{self.settings.base_url}, but no server was ever seen there. Run once with the "
                "server up, or pass the base_url= it had."
            )
            raise ConfigError(msg)
        info, seen_at = seen
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(seen_at))
        self._note(
            f"Offline: answering from the result store only, as {info.checkpoint!r} (served at "
            f"{info.base_url} when last seen, {when}); no server is contacted and rows not in "
            "the store fail."
        )
        return info

    # -- one row --------------------------------------------------------------------------
    def _known_url(self, url: str) -> images.UrlMemo | None:
        """The remembered validators of ``url``, only when the answer to its remembered content
        is stored: a 304 then answers the row without downloading it. With no stored answer the
        body must be sent anyway, so the download is a plain one (no conditional request)."""
        assert self.store is not None and self.plan is not None
        try:
            memo = self.store.url_memo(url)
            if memo is None or self._lookup(self.plan.key(memo.sha256), memo.sha256) is None:
                return None
        except StoreError:
            return None  # a memo only saves a download; the row's own lookup reports the store
        return memo

    def _lookup(self, key: str, sha256: str) -> StoredResult | None:
        """A stored answer to this request, if one is usable (failures are never answers)."""
        assert self.store is not None and self.plan is not None
        hit = self.store.get(key)
        if hit is None:
            for alias in self._legacy_aliases:
                old = legacy_key(self.task, sha256, alias)
                if old is not None:
                    hit = self.store.get_adopted(old, self.plan.checkpoint)
                if hit is not None:
                    break
        if hit is None or _unusable(self.task, hit.text, hit.finish_reason, self.plan.max_tokens):
            return None
        return hit

    # -- the lookup phase: rows the store answers, many at a time ------------------------------
    def _unstored(
        self, values: Iterable[object], results: BatchResults,
        on_row: Callable[[int, RowResult], None] | None,
    ) -> Iterator[tuple[int, object]]:
        """(position, value) of every row the store did not answer here, in order.

        A row that names an unchanged file whose answer is stored is answered here, without a
        worker: a chunk of rows at a time, with one stat per file and a few store queries per
        chunk (the remembered file hashes, then the answers), in a thread of its own that
        works one chunk ahead. Every other row (a URL, bytes, a new or changed file, an answer
        not stored, one only an adopted legacy key holds) goes to the workers, which look it up
        on their own. Runs on the batch's loop; it waits for the lookup thread only when that
        thread is behind, which it is only while every row so far came from the store.
        """
        rows = enumerate(values)
        plan = self.plan
        if self.store is None or plan is None:
            yield from rows
            return
        chunks = iter(lambda: list(itertools.islice(rows, _LOOKUP_CHUNK)), [])
        lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caprl-lookup")
        try:
            ahead = collections.deque(lookups.submit(self._answer, chunk) for chunk in itertools.islice(chunks, 2))
            while ahead:
                (positions, hits), rest = ahead.popleft().result()
                ahead.extend(lookups.submit(self._answer, chunk) for chunk in itertools.islice(chunks, 1))
                results.set_stored(positions, hits, plan.checkpoint)
                if on_row is not None:
                    for position, hit in zip(positions, hits):
                        on_row(position, RowResult.from_store(hit, plan.checkpoint))
                self.done += len(positions)
                self.cached += len(positions)
                yield from rest
        finally:
            lookups.shutdown(wait=True, cancel_futures=True)  # no lookup outlives the batch (or its store)

    def _answer(
        self, chunk: list[tuple[int, object]]
    ) -> tuple[tuple[list[int], list[StoredResult]], list[tuple[int, object]]]:
        """((positions of the rows of ``chunk`` the store answers, their answers), the other rows)."""
        with _collector_held():
            return self._answer_chunk(chunk)

    def _answer_chunk(
        self, chunk: list[tuple[int, object]]
    ) -> tuple[tuple[list[int], list[StoredResult]], list[tuple[int, object]]]:
        store, plan = self.store, self.plan
        assert store is not None and plan is not None
        stats = images.stat_files([value for _, value in chunk])
        files = [(position, stat) for (position, _), stat in zip(chunk, stats) if stat is not None]
        nothing: tuple[list[int], list[StoredResult]] = ([], [])
        if not files:
            return nothing, chunk
        try:
            hashes = store.file_hashes([stat for _, stat in files])
            known = [(position, sha) for (position, _), sha in zip(files, hashes) if sha is not None]
            keys = plan.keys([sha for _, sha in known])
            hits = store.get_many(keys) if keys else {}
        except StoreError as exc:
            self._note(f"The result store could not be read in bulk (rows were looked up one by one): {exc}")
            return nothing, chunk
        positions, answers = [], []
        task, max_tokens = self.task, plan.max_tokens
        for (position, _), hit in zip(known, map(hits.get, keys)):
            if hit is not None and not _unusable(task, hit.text, hit.finish_reason, max_tokens):
                positions.append(position)
                answers.append(hit)
        if not positions:
            return nothing, chunk
        if len(positions) == len(chunk):
            return (positions, answers), []
        done = set(positions)
        return (positions, answers), [row for row in chunk if row[0] not in done]

    async def _row(
        self, value: object, pool: ThreadPoolExecutor, downloads: ThreadPoolExecutor | None = None
    ) -> RowResult:
        """One row's result. A URL (http(s) or fsspec) is identified (downloaded) in ``downloads`` when given: its
        thread only waits on the download, so it must not hold one of ``pool``'s image threads.
        Anything else is identified, looked up and prepared in one trip to ``pool``."""
        loop = asyncio.get_running_loop()
        description = images.describe(value)
        plan = self.plan
        assert plan is not None
        try:
            if downloads is not None and images.is_remote(value):
                source = await loop.run_in_executor(downloads, self._identify, value)
                key, hit, payload = await loop.run_in_executor(pool, self._look_up_or_prepare, source)
            else:
                source, key, hit, payload = await loop.run_in_executor(pool, self._identify_and_prepare, value)
            if hit is not None:
                return RowResult.from_store(hit, plan.checkpoint)
            if payload is None:  # offline: nothing is sent
                msg = (
                    f"Not in the result store for {plan.checkpoint!r}, and offline=True sends "
                    "nothing to a server. Run again with the server up to caption it."
                )
                return RowResult.failed(NotStoredError(msg), description)
            s = self.task.sampling
            fleet = self.fleet
            assert fleet is not None
            messages = self.task.messages(payload.data_url)
            while True:  # the server with the most room; another one if it turns out to be down
                lane = await fleet.pick()
                info = lane.info or plan.info
                try:
                    async with lane.pacer.slot():
                        completion = await lane.client.complete(
                            model=info.model,
                            messages=messages,
                            temperature=s.temperature,
                            top_p=s.top_p,
                            max_tokens=plan.max_tokens,
                            repetition_penalty=s.repetition_penalty,
                            seed=s.seed,
                            structured=plan.structured,
                            processor_kwargs=payload.processor_kwargs,
                            on_retry=self._count_retry,
                        )
                    break
                except ServerMoved:
                    continue  # no answer came: the request goes to another server
            lane.answered += 1
            sent = (payload.width, payload.height)
            del messages
            del payload
            why = _unusable(self.task, completion.text, completion.finish_reason, plan.max_tokens)
            if why is not None:
                # Not an answer: never stored, so the next run asks again. The text stays with
                # the row (details=True) for a parse failure; an empty one is just missing.
                return RowResult(
                    text=completion.text or None, error=f"{row_error(why)} [input: {description}]",
                    error_type=type(why).__name__, model=info.model, latency_s=completion.latency_s,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    finish_reason=completion.finish_reason, attempts=completion.attempts,
                    input=description,
                )
            created_at = None
            if self._writes is not None:
                # Written behind the batch, many rows per transaction (caprl_nb.writeback); a
                # write that fails costs a note, never this row's answer.
                created_at = time.time()
                self._writes.put({
                    "key": key, "task": self.task.name, "image_sha256": source.sha256,
                    "input": description, "model": info.model, "model_root": info.root,
                    "checkpoint": plan.checkpoint, "base_url": info.base_url,
                    "server_version": info.version,
                    "params": {**plan.request, "max_model_len": info.max_model_len},
                    "text": completion.text, "finish_reason": completion.finish_reason,
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                    "latency_s": completion.latency_s, "sent_width": sent[0], "sent_height": sent[1],
                    "created_at": created_at,
                })
            return RowResult(
                text=completion.text, model=info.model, checkpoint=plan.checkpoint,
                latency_s=completion.latency_s,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                finish_reason=completion.finish_reason, attempts=completion.attempts,
                key=key, base_url=info.base_url, server_version=info.version, created_at=created_at,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.fleet is not None and exc is self.fleet.dead:
                raise  # the batch's verdict on the servers: the worker stops (see run)
            return RowResult.failed(exc, description)

    # -- in the image threads: one row's input, until it is ready to send ---------------------
    def _identify(self, value: object) -> images.ImageSource:
        """The row's input read (a file hashed, a URL downloaded); memos queued for the store."""
        store = self.store
        known = known_url = None
        if store is not None:
            known, known_url = store.file_hash, self._known_url
        source = images.identify(value, known_hash=known, known_url=known_url, url_timeout=self.settings.url_timeout)
        writes = self._writes
        if writes is not None:
            if source.hashed_now:
                assert source.stat is not None
                writes.remember_file_hash(source.stat, source.sha256)
            if source.url_memo is not None:
                url = value if isinstance(value, str) else images.plain_value(value)  # or an HF value's path
                if isinstance(url, str):
                    writes.remember_url(url.strip(), source.url_memo)
        return source

    def _look_up_or_prepare(
        self, source: images.ImageSource
    ) -> tuple[str, StoredResult | None, images.Payload | None]:
        """The row's key, and its stored answer or else the image to send (None offline)."""
        plan = self.plan
        assert plan is not None
        key = plan.key(source.sha256)
        if self.store is not None:
            hit = self._lookup(key, source.sha256)
            if hit is not None:
                return key, hit, None
        if self.settings.offline:
            return key, None, None
        return key, None, images.prepare(source, plan.preset, max_image_tokens=plan.image_budget)

    def _identify_and_prepare(
        self, value: object
    ) -> tuple[images.ImageSource, str, StoredResult | None, images.Payload | None]:
        source = self._identify(value)
        return (source, *self._look_up_or_prepare(source))

    def _count_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        self.retries += 1

    # -- the batch ------------------------------------------------------------------------
    async def run(
        self, values: Iterable[object], total: int,
        on_row: Callable[[int, RowResult], None] | None = None,
    ) -> BatchResults:
        """One result per value, in order. Raises only when no server answers at the start
        (ServerUnavailableError) or a setting cannot work; every other failure is a row's.
        ``on_row(position, result)`` sees each finished row's full record (provenance too)."""
        self._main = asyncio.current_task()
        if self._cancelled:
            raise asyncio.CancelledError
        results = BatchResults(total)
        positions = self._unstored(values, results, on_row)  # what the store answers is done
        pending: dict[int, object] = {}  # rows taken by a worker and not finished
        urls = self.settings.base_urls
        # concurrency= is per server: each one's pacer caps its own requests in flight.
        workers = max(1, min(self.settings.concurrency * len(urls), total))
        threads = max(2, min(8, (os.cpu_count() or 2)))

        async def worker() -> None:
            assert self.fleet is not None
            for position, value in positions:
                pending[position] = value
                try:
                    result = await self._row(value, pool, downloads)
                except ServerUnavailableError as exc:
                    if exc is not self.fleet.dead:
                        raise
                    break  # left for the one verdict below, with the rows never started
                del pending[position]
                results.set(position, result)
                if on_row is not None:
                    on_row(position, result)
                self.done += 1
                self.failed += result.error is not None
                self.cached += result.cached

        # Answers are written behind the batch; all of them before run() returns, however it ends.
        self._writes = WriteBehind(self.store, self._note) if self.store is not None else None
        try:
            async with contextlib.AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(CapRLClient(self.settings.for_server(url))) for url in urls
                ]
                infos = await self._connect_all(clients)
                first = next(info for info in infos if info is not None)
                known_lens = [i.max_model_len for i in infos if i is not None and i.max_model_len]
                if len(known_lens) > 1:  # answers must fit the smallest context of them all
                    first = dataclasses.replace(first, max_model_len=min(known_lens))
                self.plan, notes = plan_request(self.task, first, self.settings.preset)
                for note in notes:
                    self._note(note)
                if self.store is not None:
                    self._legacy_aliases = self.store.adopted_aliases(self.plan.checkpoint)
                lanes = [self._lane(client, info, workers) for client, info in zip(clients, infos)]
                self.fleet = Fleet(lanes, on_change=self._say)
                self.watch, self.pacer = lanes[0].watch, lanes[0].pacer
                for lane, info in zip(lanes, infos):
                    if info is None:  # did not answer at the start: joins when it does
                        self.fleet.mark_down(lane, ServerUnavailableError(f"{lane.name} did not answer"))
                with (ThreadPoolExecutor(max_workers=threads, thread_name_prefix="caprl-image") as pool,
                      ThreadPoolExecutor(max_workers=workers, thread_name_prefix="caprl-download") as downloads):
                    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
                    pacing = [asyncio.ensure_future(lane.pacer.run()) for lane in lanes]
                    try:
                        await asyncio.gather(*tasks)
                    finally:
                        # Collect every worker, so none is left running or "never retrieved"
                        # (no TaskGroup before Python 3.11).
                        tasks += pacing
                        for task in tasks:
                            task.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)
                        self.fleet.close()
        finally:
            if self._writes is not None:
                self._writes.close()
        assert self.fleet is not None
        if self.fleet.dead is not None:
            self._give_up(results, pending, values, self.fleet.dead)
        return results

    def _lane(self, client: CapRLClient, info: ServerInfo | None, workers: int) -> Lane:
        """One server's client, health watch and pacer (:func:`caprl_nb.fleet.open_lane`)."""
        assert self.plan is not None
        return open_lane(client, info, min(workers, self.settings.concurrency), self.plan.checkpoint,
                         self.settings.model, self.settings.outage_timeout, on_change=self._say)

    def _give_up(
        self, results: BatchResults, pending: dict[int, object], values: Iterable[object],
        dead: BaseException,
    ) -> None:
        """Every row not finished fails with the one error that says the server is gone."""
        error = row_error(dead)
        unfinished = np.flatnonzero(~results.done)
        for i in unfinished.tolist():
            value = pending[i] if i in pending else _value_at(values, i)
            description = f"row {i}" if value is _UNKNOWN else images.describe(value)
            results.set(i, RowResult(error=error, error_type=type(dead).__name__, input=description))
        self.done += len(unfinished)
        self.failed += len(unfinished)
        self._note(f"{len(unfinished)} unfinished row(s) failed at once. {error}")


    def cancel(self) -> None:
        """Stop the batch (call on its loop); before :meth:`run` has started, it will not start."""
        self._cancelled = True
        if self._main is not None:
            self._main.cancel()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


# After Ctrl-C, how long the caller waits for the batch to stop before it returns; a batch
# still busy then (a write waiting for the store's lock) finishes and closes it on its own.


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

    def stopped(still_writing: bool) -> str:
        msg = (
            f"Interrupted: {runner.done - runner.failed} of {total} rows finished and are "
            "stored. Run the same call again to resume where it stopped."
        )
        if still_writing:
            msg += " A store write still in progress finishes in the background."
        return msg

    bar = _progress_bar(total, description or task.name, progress)
    try:
        value = run_blocking(
            lambda: runner.run(values, total), name="caprl-batch", cancel=runner.cancel,
            close=runner.close, stopped=stopped, tick=lambda: _update(bar, runner), stop_wait_s=STOP_WAIT_S,
        )
    finally:
        if bar is not None:
            bar.close()
    for note in runner.notes:
        warn(note)
    return value


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
        fields: dict[str, Any] = {"errors": runner.failed, "cached": runner.cached, "retries": runner.retries}
        fleet = runner.fleet
        if fleet is not None and fleet.several:  # answers per server, and their rate: who pulls its weight
            fields["servers"] = server_rates(fleet, float(bar.format_dict.get("elapsed") or 0.0))
        bar.set_postfix(fields, refresh=False)


def server_rates(fleet: Fleet, elapsed: float) -> str:
    """Each server's answers and answers per second so far, for the progress bar."""
    parts = []
    for lane in fleet.lanes:
        rate = f" {lane.answered / elapsed:.1f}/s" if elapsed > 0 else ""
        parts.append(f"{lane.name}: {lane.answered}{rate}{'' if lane.usable else ' (down)'}")
    return "; ".join(parts)
