"""Chat turns with a different text per request: verify's filter tries and caption answers.

The batch (:mod:`caprl_nb.batch`) sends one prompt to many images. Verify asks many prompts
(each question, with its options shuffled per try) with the row's image or with no image at
all, so it sends its turns here: through :class:`~caprl_nb.client.CapRLClient` (its timeouts,
retries and error classes), with a progress bar, every answer remembered in the result store.
The loop runs in a thread of its own (:func:`caprl_nb.blocking.run_blocking`, as the batch's
does), so this works inside Jupyter's running loop, and Ctrl-C stops it keeping what finished.

**Streaming.** The caller hands over rows (:class:`RowTurns`: one row's turns), lazily; the
runner pulls them only as its workers need turns, a chunk of :data:`LOOKUP_TURNS` turns at a
time, and hands each row's replies back (``on_row``) as soon as its last turn has one, so only a
window of rows is in memory however many there are. Each chunk is looked up in the store in
bulk, in a thread one chunk ahead of the workers: the turns without an image, and the image
turns of every row whose file's hash the store remembers (the file-hash memo, as the batch's
cached rows are found), many keys per query. Only what the store does not hold reaches a worker.

**Servers.** ``base_url=`` may name several servers (:mod:`caprl_nb.fleet`, as for the batch):
they must serve one checkpoint, each turn goes to the server with the most room, and the turns
of a server that stops answering go to the others (with one server, an outage is waited for up
to ``outage_timeout``). ``concurrency`` is per server.

A turn's store key is the sha256 of ``{"v", "checkpoint", "request", "images"}``: the checkpoint
the servers report they loaded (never the served alias), everything sent besides the alias
(task, text, the try's number, sampling, the structured-output fields, the image budget) and the
sha256 of the image sent, if any. The identical call again sends no chat request; a changed
caption changes only the texts of that row's caption answers. Each stored answer keeps its
provenance: the task (``verify.with_image``, ``verify.without_image``, ``verify.answer``), the
served model, the checkpoint, the URL and version of the server that answered, and the request
as ``params``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from caprl_nb import images
from caprl_nb.blocking import run_blocking
from caprl_nb.client import CapRLClient, ServerInfo
from caprl_nb.config import Settings
from caprl_nb.errors import (
    ConfigError,
    EmptyAnswerError,
    NotStoredError,
    ServerUnavailableError,
    StoreError,
    row_error,
    warn,
)
from caprl_nb.fleet import Fleet, ServerMoved, connect_all, open_lane
from caprl_nb.models import ModelPreset
from caprl_nb.plan import plan_request
from caprl_nb.prompts import Sampling, Task
from caprl_nb.store import ResultStore
from caprl_nb.verify.options import choice_request
from caprl_nb.writeback import WriteBehind

__all__ = [
    "LOOKUP_TURNS", "TURN_KEY_VERSION", "Reply", "RowTurns", "Turn", "TurnsRun", "run_turns", "stream_turns",
    "turn_key",
]

TURN_KEY_VERSION = 1
# Turns looked up in the store at once (whole rows), one chunk ahead of the workers.
LOOKUP_TURNS = 2048


@dataclass(frozen=True)
class Turn:
    """One chat request: a user turn of ``text`` (after the row's image when ``image``)."""

    task: str  # "verify.with_image" | "verify.without_image" | "verify.answer"
    row: int  # the row's position (its image, and the input named in provenance)
    text: str
    letters: tuple[str, ...]  # the answers structured outputs allow
    image: bool = False
    # Which try of the question this is: part of the key, so two tries that happen to show the
    # options in the same order are still two answers (and a re-run gives each its own back).
    sample: int = 0


@dataclass(frozen=True)
class RowTurns:
    """One row's turns (all of the same ``row``), and what the caller needs to read their
    replies (``context``, handed back untouched)."""

    row: int
    turns: Sequence[Turn]
    context: Any = None


@dataclass
class Reply:
    text: str | None = None
    error: str | None = None
    error_type: str | None = None
    cached: bool = False


@dataclass
class TurnsRun:
    """Every turn's reply, in order, and the server that answered (None if none was asked)."""

    replies: list[Reply]
    info: ServerInfo | None


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def turn_key(checkpoint: str, request: dict[str, Any], image_sha256: str | None) -> str:
    """The store key of one turn (see the module docstring)."""
    return _digest({
        "v": TURN_KEY_VERSION, "checkpoint": checkpoint, "request": request,
        "images": [image_sha256] if image_sha256 else [],
    })


@functools.lru_cache(maxsize=64)
def _structured(letters: tuple[str, ...], version: str | None) -> dict[str, Any]:
    """choice_request, once per set of letters (a cached re-run builds a request per turn);
    the fields are only read (sent, hashed, stored), never changed."""
    return choice_request(letters, version)


@dataclass(frozen=True)
class _Fit:
    """What one run's requests are fitted to: the server that answers and the image budget."""

    info: ServerInfo
    preset: ModelPreset | None
    budget: int | None  # most image tokens an image may cost
    max_tokens: int  # as sent

    def request(self, turn: Turn, sampling: Sampling) -> dict[str, Any]:
        """Everything sent for ``turn`` that can change the answer, besides the image and the alias."""
        return {
            "task": turn.task, "text": turn.text, "sample": turn.sample, "temperature": sampling.temperature,
            "top_p": sampling.top_p, "repetition_penalty": sampling.repetition_penalty,
            "max_tokens": self.max_tokens, "seed": sampling.seed,
            "structured": _structured(turn.letters, self.info.version),
            "image": ({"preset": self.preset.family, "max_image_tokens": self.budget}
                      if turn.image and self.preset else None),
        }


class _RowRun:
    """One row in flight: its replies so far, and its image while image turns wait for it."""

    __slots__ = ("images_left", "keys", "left", "payload", "replies", "sha", "source", "spec")

    def __init__(self, spec: RowTurns) -> None:
        self.spec = spec
        self.replies: list[Reply | None] = [None] * len(spec.turns)
        self.left = len(spec.turns)  # turns without a reply
        self.keys: list[str | None] = [None] * len(spec.turns)  # looked up in bulk, not stored
        self.sha: str | None = None  # the image's, from the store's file-hash memo
        self.source: asyncio.Future[images.ImageSource] | None = None
        self.payload: asyncio.Future[images.Payload] | None = None
        self.images_left = 0  # image turns still to send: the payload is dropped after the last


def _chunks(rows: Iterator[RowTurns], turns: int) -> Iterator[list[RowTurns]]:
    """Whole rows, about ``turns`` turns at a time."""
    chunk: list[RowTurns] = []
    size = 0
    for spec in rows:
        chunk.append(spec)
        size += len(spec.turns)
        if size >= turns:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


class _Runner:
    def __init__(self, values: Sequence[object], settings: Settings, sampling: Sampling, *, cache: bool,
                 on_row: Callable[[RowTurns, list[Reply]], None]) -> None:
        self.values = values
        self.settings = settings
        self.sampling = sampling
        self.on_row = on_row
        self.store = ResultStore(settings.store_path) if cache else None
        if settings.offline and self.store is None:
            raise ConfigError("offline=True answers from the result store only; it cannot run with cache=False.")
        self.done = 0
        self.cached = 0
        self.failed = 0
        self.notes: list[str] = []
        self.main: asyncio.Task[Any] | None = None
        self.cancelled = False
        self.fleet: Fleet | None = None  # None offline
        self.writes: WriteBehind | None = None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _say(self, text: str) -> None:
        print(f"caprl: {text}", file=sys.stderr, flush=True)

    # -- servers ---------------------------------------------------------------------------
    async def _discover(self, client: CapRLClient) -> ServerInfo:
        info = await client.discover(self.settings.model, self.settings.wait_for_server, self._say)
        if self.store is not None:
            try:
                self.store.remember_server(info)
            except StoreError as exc:
                self.note(f"The result store could not keep a memo: {exc}")
        return info

    async def _connect(self, stack: contextlib.AsyncExitStack) -> ServerInfo:
        """Who answers: every server of ``base_url=`` in a fleet (or, offline, the checkpoint
        last seen there); the info returned is the first's, fitted to the smallest context."""
        s = self.settings
        if s.offline:
            return self._offline_identity()
        clients = [await stack.enter_async_context(CapRLClient(s.for_server(url))) for url in s.base_urls]
        infos = await connect_all(clients, self._discover, self.note, s.outage_timeout)
        first = next(info for info in infos if info is not None)
        lengths = [info.max_model_len for info in infos if info is not None and info.max_model_len]
        if len(lengths) > 1:  # requests must fit the smallest context of them all
            first = dataclasses.replace(first, max_model_len=min(lengths))
        lanes = [open_lane(client, info, s.concurrency, first.checkpoint, s.model, s.outage_timeout, self._say)
                 for client, info in zip(clients, infos)]
        self.fleet = Fleet(lanes, on_change=self._say)
        for lane, info in zip(lanes, infos):
            if info is None:  # did not answer at the start: joins when it does
                self.fleet.mark_down(lane, ServerUnavailableError(f"{lane.name} did not answer"))
        return first

    def _offline_identity(self) -> ServerInfo:
        assert self.store is not None
        for url in self.settings.base_urls:
            seen = self.store.last_server(url)
            if seen is not None:
                return seen[0]
        msg = (f"offline=True answers from the store as the checkpoint last served at {self.settings.base_url}, "
               "but no server was ever seen there. Run once with the server up.")
        raise ConfigError(msg)

    def _fit(self, info: ServerInfo, longest: str | None) -> _Fit:
        if longest is None:
            return _Fit(info, None, None, self.sampling.max_tokens)
        plan, notes = plan_request(Task("verify.with_image", longest, self.sampling), info, self.settings.preset)
        for text in notes:
            self.note(text)
        return _Fit(info, plan.preset, plan.image_budget, plan.max_tokens)

    # -- the run ---------------------------------------------------------------------------
    async def run(self, rows: Iterable[RowTurns], longest: str | None) -> ServerInfo | None:
        self.main = asyncio.current_task()
        if self.cancelled:
            raise asyncio.CancelledError
        specs = iter(rows)
        head = next(specs, None)
        if head is None:
            return None
        s = self.settings
        self.writes = WriteBehind(self.store, self.note) if self.store is not None else None
        try:
            async with contextlib.AsyncExitStack() as stack:
                info = await self._connect(stack)
                fit = self._fit(info, longest)
                pending = self._unanswered(itertools.chain([head], specs), fit)
                threads = max(2, min(8, os.cpu_count() or 2))
                with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="caprl-verify") as pool:

                    async def worker() -> None:
                        for state, j in pending:
                            self._settle(state, j, await self._one(state, j, fit, pool))

                    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, s.concurrency * len(s.base_urls)))]
                    lanes = self.fleet.lanes if self.fleet is not None else []
                    pacing = [asyncio.ensure_future(lane.pacer.run()) for lane in lanes]
                    try:
                        await asyncio.gather(*workers)
                    finally:
                        for task in workers + pacing:
                            task.cancel()
                        await asyncio.gather(*workers, *pacing, return_exceptions=True)
                        if self.fleet is not None:
                            self.fleet.close()
        finally:
            if self.writes is not None:
                self.writes.close()
        return info

    def _settle(self, state: _RowRun, j: int, reply: Reply) -> None:
        state.replies[j] = reply
        state.left -= 1
        self.done += 1
        self.cached += reply.cached
        self.failed += reply.error is not None
        if state.spec.turns[j].image:
            state.images_left -= 1
            if state.images_left == 0:  # the row's last image turn: its image is not needed again
                state.source = state.payload = None
        if state.left == 0:
            self._finish(state)

    def _finish(self, state: _RowRun) -> None:
        replies = [reply or Reply() for reply in state.replies]
        state.replies = []
        self.on_row(state.spec, replies)

    # -- the lookup phase: what the store answers, a chunk of rows at a time --------------------
    def _unanswered(self, rows: Iterator[RowTurns], fit: _Fit) -> Iterator[tuple[_RowRun, int]]:
        """(row, turn) of every turn the store did not answer in bulk, in order; rows the store
        answers entirely are finished here. Rows are taken from ``rows`` only as the workers need
        turns (on the run's loop); each chunk is looked up in a thread one chunk ahead."""
        chunks = _chunks(rows, LOOKUP_TURNS)
        if self.store is None:
            for chunk in chunks:
                for spec in chunk:
                    yield from self._open(_RowRun(spec))
            return
        lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caprl-verify-lookup")
        try:
            ahead = collections.deque(
                lookups.submit(self._look_up, chunk, fit) for chunk in itertools.islice(chunks, 2))
            while ahead:
                states = ahead.popleft().result()
                ahead.extend(lookups.submit(self._look_up, chunk, fit) for chunk in itertools.islice(chunks, 1))
                for state in states:
                    yield from self._open(state)
        finally:
            lookups.shutdown(wait=True, cancel_futures=True)  # no lookup outlives the run (or its store)

    def _open(self, state: _RowRun) -> Iterator[tuple[_RowRun, int]]:
        todo = [j for j, reply in enumerate(state.replies) if reply is None]
        answered = len(state.replies) - len(todo)
        self.done += answered
        self.cached += answered
        if not todo:
            self._finish(state)
            return
        turns = state.spec.turns
        state.images_left = sum(1 for j in todo if turns[j].image)
        for j in todo:
            yield state, j

    def _look_up(self, chunk: list[RowTurns], fit: _Fit) -> list[_RowRun]:
        """The rows of ``chunk`` with the replies the store holds filled in (in a thread): the
        image's hash from the file-hash memo (one stat per file), then every key it allows."""
        store = self.store
        assert store is not None
        states = [_RowRun(spec) for spec in chunk]
        try:
            framed = [state for state in states if any(turn.image for turn in state.spec.turns)]
            stats = images.stat_files([self.values[state.spec.row] for state in framed]) if framed else []
            files = [(state, stat) for state, stat in zip(framed, stats) if stat is not None]
            for (state, _), sha in zip(files, store.file_hashes([stat for _, stat in files]) if files else []):
                state.sha = sha
            checkpoint, keys = fit.info.checkpoint, []
            for state in states:
                for j, turn in enumerate(state.spec.turns):
                    if turn.image and state.sha is None:
                        continue  # the image is read first, by a worker
                    key = turn_key(checkpoint, fit.request(turn, self.sampling), state.sha if turn.image else None)
                    state.keys[j] = key
                    keys.append(key)
            hits = store.get_many(keys) if keys else {}
        except StoreError as exc:
            self.note(f"The result store could not be read in bulk (turns were looked up one by one): {exc}")
            return [_RowRun(spec) for spec in chunk]
        for state in states:
            for j, looked in enumerate(state.keys):
                hit = hits.get(looked) if looked is not None else None
                if hit is not None and hit.text.strip():
                    state.replies[j] = Reply(text=hit.text, cached=True)
                    state.left -= 1
        return states

    # -- one turn --------------------------------------------------------------------------
    async def _source(self, state: _RowRun, pool: ThreadPoolExecutor) -> images.ImageSource:
        if state.source is None:
            known = self.store.file_hash if self.store is not None else None
            value, timeout, writes = self.values[state.spec.row], self.settings.url_timeout, self.writes

            def identify() -> images.ImageSource:
                source = images.identify(value, known_hash=known, url_timeout=timeout)
                if writes is not None and source.hashed_now:  # a re-run finds it in bulk
                    assert source.stat is not None
                    writes.remember_file_hash(source.stat, source.sha256)
                return source

            state.source = asyncio.get_running_loop().run_in_executor(pool, identify)
        return await asyncio.shield(state.source)

    async def _payload(self, state: _RowRun, source: images.ImageSource, pool: ThreadPoolExecutor,
                       fit: _Fit) -> images.Payload:
        if state.payload is None:
            preset, budget = fit.preset, fit.budget
            assert preset is not None
            state.payload = asyncio.get_running_loop().run_in_executor(
                pool, lambda: images.prepare(source, preset, max_image_tokens=budget))
        return await asyncio.shield(state.payload)

    async def _one(self, state: _RowRun, j: int, fit: _Fit, pool: ThreadPoolExecutor) -> Reply:
        turn = state.spec.turns[j]
        s, sampling, loop = self.settings, self.sampling, asyncio.get_running_loop()
        description = images.describe(self.values[turn.row]) if turn.row < len(self.values) else f"row {turn.row}"
        try:
            request = fit.request(turn, sampling)
            sha = None
            source = None
            if turn.image:
                source = await self._source(state, pool)
                sha = source.sha256
            key = state.keys[j]
            if key is None or (turn.image and sha != state.sha):  # not looked up yet (or the file changed)
                key = turn_key(fit.info.checkpoint, request, sha)
                if self.store is not None:
                    hit = await loop.run_in_executor(pool, self.store.get, key)
                    if hit is not None and hit.text.strip():
                        return Reply(text=hit.text, cached=True)
            if s.offline:
                msg = f"Not in the result store for {fit.info.checkpoint!r}, and offline=True sends nothing."
                raise NotStoredError(msg)
            fleet = self.fleet
            assert fleet is not None
            if fleet.dead is not None:  # every server is gone: no image is read for nothing
                raise fleet.dead
            content: list[dict[str, Any]] = []
            processor: dict[str, Any] = {}
            if turn.image:
                assert source is not None
                payload = await self._payload(state, source, pool, fit)
                content.append({"type": "image_url", "image_url": {"url": payload.data_url}})
                processor = payload.processor_kwargs
            content.append({"type": "text", "text": turn.text})
            while True:  # the server with the most room; another one if it turns out to be down
                lane = await fleet.pick()
                info = lane.info or fit.info
                try:
                    async with lane.pacer.slot():
                        completion = await lane.client.complete(
                            model=info.model, messages=[{"role": "user", "content": content}],
                            temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=fit.max_tokens,
                            repetition_penalty=sampling.repetition_penalty, seed=sampling.seed,
                            structured=request["structured"], processor_kwargs=processor,
                        )
                    break
                except ServerMoved:
                    continue  # no answer came: the turn goes to another server
            lane.answered += 1
            if not completion.text.strip():
                raise EmptyAnswerError(
                    f"the server returned an empty answer (finish_reason={completion.finish_reason!r}); "
                    "it is asked again on the next run.")
            if self.writes is not None:
                self.writes.put({
                    "key": key, "task": turn.task, "image_sha256": sha or "", "input": description,
                    "model": info.model, "model_root": info.root, "checkpoint": fit.info.checkpoint,
                    "base_url": info.base_url, "server_version": info.version,
                    "params": {**request, "max_model_len": info.max_model_len},
                    "text": completion.text, "finish_reason": completion.finish_reason,
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens, "latency_s": completion.latency_s,
                    "created_at": time.time(),
                })
            return Reply(text=completion.text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a turn's failure is its reply, never the call's
            return Reply(error=f"{row_error(exc)} [input: {description}]", error_type=type(exc).__name__)

    def cancel(self) -> None:
        """Stop the run (called on its loop); before :meth:`run` has started, it will not start."""
        self.cancelled = True
        if self.main is not None:
            self.main.cancel()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def stream_turns(
    rows: Iterable[RowTurns], values: Sequence[object], settings: Settings, sampling: Sampling, *,
    on_row: Callable[[RowTurns, list[Reply]], None], total: int, longest: str | None,
    cache: bool = True, progress: bool = True, description: str = "verify",
) -> ServerInfo | None:
    """Send the turns of ``rows`` (taken lazily, see the module docstring); ``on_row(row,
    replies)`` gets each row's replies, in its turns' order, once all have one (on the run's
    thread, rows roughly in order). ``values``: the rows' images, by position; ``total``: the
    turns of all rows (for the progress bar); ``longest``: the longest text of a turn with an
    image (the image budget is fitted to it; None when no turn has an image). Blocks until every
    turn has a reply and returns the server that answered (None when no row came). Raises only
    when no server answers at the start or a setting cannot work; a failed turn is a reply with
    ``error``."""
    runner = _Runner(values, settings, sampling, cache=cache, on_row=on_row)

    def stopped(still_writing: bool) -> str:
        msg = "Interrupted: every answer received is stored; run the same call again to resume."
        return msg + (" A store write still in progress finishes in the background." if still_writing else "")

    bar = _bar(total, description, progress and total > 0)
    try:
        info = run_blocking(lambda: runner.run(rows, longest), name="caprl-verify", cancel=runner.cancel,
                            close=runner.close, stopped=stopped, tick=lambda: _update(bar, runner))
    finally:
        if bar is not None:
            bar.close()
    for note in runner.notes:
        warn(note)
    return info


def run_turns(
    turns: Sequence[Turn], values: Sequence[object], settings: Settings, sampling: Sampling, *,
    cache: bool = True, progress: bool = True, description: str = "verify",
) -> TurnsRun:
    """Send ``turns`` (all in memory: for a few; :func:`stream_turns` takes rows lazily) and
    return every turn's reply in order."""
    replies = [Reply() for _ in turns]
    by_row: dict[int, list[int]] = {}
    for i, turn in enumerate(turns):
        by_row.setdefault(turn.row, []).append(i)
    rows = [RowTurns(row, [turns[i] for i in positions], positions) for row, positions in by_row.items()]

    def on_row(spec: RowTurns, got: list[Reply]) -> None:
        for i, reply in zip(spec.context, got):
            replies[i] = reply

    longest = max((t.text for t in turns if t.image), key=len, default=None)
    info = stream_turns(rows, values, settings, sampling, on_row=on_row, total=len(turns), longest=longest,
                        cache=cache, progress=progress, description=description)
    return TurnsRun(replies, info)


def _bar(total: int, description: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"caprl {description}", unit="req", dynamic_ncols=True)


def _update(bar: Any, runner: _Runner) -> None:
    if bar is None or runner.done <= bar.n:
        return
    bar.update(runner.done - bar.n)
    fields: dict[str, Any] = {"errors": runner.failed, "cached": runner.cached}
    fleet = runner.fleet
    if fleet is not None and fleet.several:  # answers per server, and their rate
        from caprl_nb.batch import server_rates

        fields["servers"] = server_rates(fleet, float(bar.format_dict.get("elapsed") or 0.0))
    bar.set_postfix(fields, refresh=False)
