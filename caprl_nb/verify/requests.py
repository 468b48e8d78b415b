"""Chat turns with a different text per request: verify's filter tries and caption answers.

The batch (:mod:`caprl_nb.batch`) sends one prompt to many images. Verify asks many prompts
(each question, with its options shuffled per try) with the row's image or with no image at
all, so it sends its turns here: through :class:`~caprl_nb.client.CapRLClient` (its timeouts,
retries and error classes), at most ``concurrency`` at once, with a progress bar, every answer
remembered in the result store. The loop runs in a thread of its own, as the batch's does, so
this works inside Jupyter's running loop.

A turn's store key is the sha256 of ``{"v", "checkpoint", "request", "images"}``: the checkpoint
the server reports it loaded (never the served alias), everything sent besides the alias (task,
text, the try's number, sampling, the structured-output fields, the image budget) and the
sha256 of the image sent, if any. The identical call again sends no chat request; a changed caption changes only the
texts of that row's caption answers. Each stored answer keeps its provenance: the task
(``verify.with_image``, ``verify.without_image``, ``verify.answer``), the served model, the
checkpoint, the server's URL and version, and the request as ``params``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from caprl_nb import images
from caprl_nb.client import CapRLClient, ServerInfo
from caprl_nb.config import Settings
from caprl_nb.errors import ConfigError, EmptyAnswerError, NotStoredError, StoreError, row_error, warn
from caprl_nb.models import ModelPreset
from caprl_nb.plan import plan_request
from caprl_nb.prompts import Sampling, Task
from caprl_nb.store import ResultStore
from caprl_nb.verify.options import choice_request
from caprl_nb.writeback import WriteBehind

__all__ = ["TURN_KEY_VERSION", "Reply", "Turn", "TurnsRun", "run_turns", "turn_key"]

TURN_KEY_VERSION = 1


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
            "structured": choice_request(turn.letters, self.info.version),
            "image": ({"preset": self.preset.family, "max_image_tokens": self.budget}
                      if turn.image and self.preset else None),
        }


class _Runner:
    def __init__(self, turns: Sequence[Turn], values: Sequence[object], settings: Settings,
                 sampling: Sampling, *, cache: bool) -> None:
        self.turns = turns
        self.values = values
        self.settings = settings
        self.sampling = sampling
        self.store = ResultStore(settings.store_path) if cache else None
        if settings.offline and self.store is None:
            raise ConfigError("offline=True answers from the result store only; it cannot run with cache=False.")
        self.done = 0
        self.cached = 0
        self.failed = 0
        self.notes: list[str] = []
        self.main: asyncio.Task[Any] | None = None
        self._sources: dict[int, asyncio.Future[images.ImageSource]] = {}
        self._payloads: dict[int, asyncio.Future[images.Payload]] = {}
        self._left: dict[int, int] = {}
        for turn in turns:
            if turn.image:
                self._left[turn.row] = self._left.get(turn.row, 0) + 1

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    async def _identity(self, client: CapRLClient) -> ServerInfo:
        s = self.settings
        if not s.offline:
            info = await client.discover(s.model, s.wait_for_server, lambda t: print(f"caprl: {t}", file=sys.stderr))
            if self.store is not None:
                try:
                    self.store.remember_server(info)
                except StoreError as exc:
                    self.note(f"The result store could not keep a memo: {exc}")
            return info
        assert self.store is not None
        seen = self.store.last_server(s.base_urls[0])
        if seen is None:
            msg = (f"offline=True answers from the store as the checkpoint last served at {s.base_url}, "
                   "but no server was ever seen there. Run once with the server up.")
            raise ConfigError(msg)
        return seen[0]

    async def run(self) -> TurnsRun:
        self.main = asyncio.current_task()
        replies: list[Reply] = [Reply() for _ in self.turns]
        if not self.turns:
            return TurnsRun(replies, None)
        s = self.settings
        writes = WriteBehind(self.store, self.note) if self.store is not None else None
        try:
            async with CapRLClient(s.for_server(s.base_urls[0])) as client:
                info = await self._identity(client)
                fit = _Fit(info, None, None, self.sampling.max_tokens)
                if any(t.image for t in self.turns):
                    longest = max((t.text for t in self.turns if t.image), key=len)
                    plan, notes = plan_request(Task("verify.with_image", longest, self.sampling), info, s.preset)
                    for text in notes:
                        self.note(text)
                    fit = _Fit(info, plan.preset, plan.image_budget, plan.max_tokens)
                answered = await asyncio.get_running_loop().run_in_executor(None, self._stored_text_turns, fit, replies)
                queue = iter([(i, t) for i, t in enumerate(self.turns) if i not in answered])
                threads = max(2, min(8, os.cpu_count() or 2))
                with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="caprl-verify") as pool:

                    async def worker() -> None:
                        for i, turn in queue:
                            replies[i] = await self._one(turn, client, fit, pool, writes)
                            self.done += 1
                            self.cached += replies[i].cached
                            self.failed += replies[i].error is not None

                    n = max(1, min(s.concurrency, len(self.turns) - len(answered)))
                    workers = [asyncio.ensure_future(worker()) for _ in range(n)]
                    try:
                        await asyncio.gather(*workers)
                    finally:
                        for w in workers:
                            w.cancel()
                        await asyncio.gather(*workers, return_exceptions=True)
        finally:
            if writes is not None:
                writes.close()
        return TurnsRun(replies, info)

    def _stored_text_turns(self, fit: _Fit, replies: list[Reply]) -> set[int]:
        """Positions of the turns without an image the store answers, looked up many keys per
        query (a re-run's caption answers and blind tries); their replies are filled in."""
        if self.store is None:
            return set()
        keys = {i: turn_key(fit.info.checkpoint, fit.request(t, self.sampling), None)
                for i, t in enumerate(self.turns) if not t.image}
        try:
            hits = self.store.get_many(list(keys.values()))
        except StoreError as exc:
            self.note(f"The result store could not be read in bulk (turns were looked up one by one): {exc}")
            return set()
        answered = set()
        for i, key in keys.items():
            hit = hits.get(key)
            if hit is not None and hit.text.strip():
                replies[i] = Reply(text=hit.text, cached=True)
                answered.add(i)
                self._release(self.turns[i])
        self.done += len(answered)
        self.cached += len(answered)
        return answered

    async def _source(self, row: int, pool: ThreadPoolExecutor) -> images.ImageSource:
        future = self._sources.get(row)
        if future is None:
            known = self.store.file_hash if self.store is not None else None
            value, timeout = self.values[row], self.settings.url_timeout
            future = asyncio.get_running_loop().run_in_executor(
                pool, lambda: images.identify(value, known_hash=known, url_timeout=timeout))
            self._sources[row] = future
        return await asyncio.shield(future)

    async def _payload(self, row: int, source: images.ImageSource, pool: ThreadPoolExecutor,
                       preset: ModelPreset, budget: int | None) -> images.Payload:
        future = self._payloads.get(row)
        if future is None:
            future = asyncio.get_running_loop().run_in_executor(
                pool, lambda: images.prepare(source, preset, max_image_tokens=budget))
            self._payloads[row] = future
        return await asyncio.shield(future)

    def _release(self, turn: Turn) -> None:
        if not turn.image:
            return
        self._left[turn.row] -= 1
        if self._left[turn.row] == 0:  # the row's last image turn: its payload is not needed again
            self._payloads.pop(turn.row, None)

    async def _one(self, turn: Turn, client: CapRLClient, fit: _Fit, pool: ThreadPoolExecutor,
                   writes: WriteBehind | None) -> Reply:
        s, sampling, info = self.settings, self.sampling, fit.info
        description = images.describe(self.values[turn.row]) if turn.row < len(self.values) else f"row {turn.row}"
        try:
            request = fit.request(turn, sampling)
            sha = None
            source = None
            if turn.image:
                source = await self._source(turn.row, pool)
                sha = source.sha256
            key = turn_key(info.checkpoint, request, sha)
            if self.store is not None:
                hit = await asyncio.get_running_loop().run_in_executor(pool, self.store.get, key)
                if hit is not None and hit.text.strip():
                    return Reply(text=hit.text, cached=True)
            if s.offline:
                msg = f"Not in the result store for {info.checkpoint!r}, and offline=True sends nothing."
                raise NotStoredError(msg)
            content: list[dict[str, Any]] = []
            processor: dict[str, Any] = {}
            if turn.image:
                assert source is not None and fit.preset is not None
                payload = await self._payload(turn.row, source, pool, fit.preset, fit.budget)
                content.append({"type": "image_url", "image_url": {"url": payload.data_url}})
                processor = payload.processor_kwargs
            content.append({"type": "text", "text": turn.text})
            completion = await client.complete(
                model=info.model, messages=[{"role": "user", "content": content}],
                temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=fit.max_tokens,
                repetition_penalty=sampling.repetition_penalty, seed=sampling.seed,
                structured=request["structured"], processor_kwargs=processor,
            )
            if not completion.text.strip():
                raise EmptyAnswerError(
                    f"the server returned an empty answer (finish_reason={completion.finish_reason!r}); "
                    "it is asked again on the next run.")
            if writes is not None:
                writes.put({
                    "key": key, "task": turn.task, "image_sha256": sha or "", "input": description,
                    "model": info.model, "model_root": info.root, "checkpoint": info.checkpoint,
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
        finally:
            self._release(turn)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def run_turns(
    turns: Sequence[Turn], values: Sequence[object], settings: Settings, sampling: Sampling, *,
    cache: bool = True, progress: bool = True, description: str = "verify",
) -> TurnsRun:
    """Send ``turns`` (``values``: the rows' images, by position); blocks until every turn has a
    reply. Raises only when no server answers at the start or a setting cannot work; a failed
    turn is a reply with ``error``."""
    runner = _Runner(turns, values, settings, sampling, cache=cache)
    outcome: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    ended = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = loop.run_until_complete(runner.run())
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread below
            outcome["error"] = exc
        finally:
            loop.close()
            runner.close()
            ended.set()

    bar = _bar(len(turns), description, progress and bool(turns))
    thread = threading.Thread(target=target, name="caprl-verify", daemon=True)
    try:
        thread.start()
        while not ended.wait(0.1):
            _update(bar, runner)
        _update(bar, runner)
    except KeyboardInterrupt:
        main = runner.main
        if main is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(main.cancel)
        ended.wait(30)
        msg = "Interrupted: every answer received is stored; run the same call again to resume."
        raise KeyboardInterrupt(msg) from None
    finally:
        if bar is not None:
            bar.close()
    if "error" in outcome:
        raise outcome["error"]
    for note in runner.notes:
        warn(note)
    result: TurnsRun = outcome["value"]
    return result


def _bar(total: int, description: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"caprl {description}", unit="req", dynamic_ncols=True)


def _update(bar: Any, runner: _Runner) -> None:
    if bar is not None and runner.done > bar.n:
        bar.update(runner.done - bar.n)
        bar.set_postfix({"errors": runner.failed, "cached": runner.cached}, refresh=False)
