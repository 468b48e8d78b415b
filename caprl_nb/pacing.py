"""Adaptive concurrency: keep the server's queue full but not flooded, with no tuning.

vLLM's ``/metrics`` says how many requests it is running (``vllm:num_requests_running``) and
how many wait for a slot (``vllm:num_requests_waiting``). A batch sends at most ``limit``
requests at once. The limit starts at :data:`START` and doubles at every poll (20 a second)
while the server has taken at least half of them and nothing waits (slow start); once requests
wait, it grows by a sixteenth per poll while the queue stays under its target. When more than
twice the target wait, it drops to what runs plus the target. The target is a small queue, an
eighth of what runs and at least :data:`MIN_QUEUE`, so a slot that frees up always finds a
request ready and the server never holds hundreds of requests it cannot start (each one decoded
images and memory on its side).

``concurrency`` bounds the limit: the default (256) lets the server set the pace; a value the
user chose is a hard cap. A server without ``/metrics`` (or without those gauges) gets
``concurrency`` at once, fixed, as before there was a pacer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["MIN_QUEUE", "START", "Pacer", "queue_depth"]

START = 16  # requests in flight before the server has said anything about its queue
MIN_QUEUE = 4  # the smallest queue kept waiting at the server
POLL_S = 0.05  # between two reads of /metrics while the limit is still doubling
STEADY_POLL_S = 0.25  # and afterwards

_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"


def queue_depth(text: str | None) -> tuple[int, int] | None:
    """(running, waiting) from Prometheus text, summed over engines; None without both gauges."""
    if not text:
        return None
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting")):
            continue
        name, brace, rest = line.partition("{")
        value_part = rest.rpartition("}")[2] if brace else line[len(name):]
        fields = value_part.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        name = name.strip()
        found[name] = found.get(name, 0.0) + value
    if _RUNNING not in found or _WAITING not in found:
        return None
    return int(found[_RUNNING]), int(found[_WAITING])


class Pacer:
    """The in-flight limit of one batch (one event loop); see the module docstring."""

    def __init__(self, cap: int, read_metrics: Callable[[], Awaitable[str | None]]) -> None:
        self.cap = max(1, cap)
        self._read = read_metrics
        self.limit = min(self.cap, START)
        self.in_flight = 0
        self.adaptive = True  # False once the server turned out to have no queue gauges
        self._peak = 0  # most requests in flight since the last poll
        self._slow_start = True
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``limit`` places for a request while it is in flight."""
        while self.in_flight >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1
        self._peak = max(self._peak, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._wake()

    def _wake(self) -> None:
        """Let as many waiting requests go as there are free places."""
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def _set(self, limit: int) -> None:
        self.limit = max(1, min(self.cap, limit))
        self._wake()

    def decide(self, running: int, waiting: int) -> int:
        """The next limit, given what the server runs and queues now."""
        target = max(MIN_QUEUE, running // 8)
        in_use = self._peak >= self.limit
        self._peak = self.in_flight
        if waiting > 2 * target:
            self._slow_start = False
            return running + target
        if waiting > 0:
            self._slow_start = False  # the server is full: from here on, small steps
        if waiting >= target or not in_use:
            return self.limit
        if not self._slow_start:
            return self.limit + max(1, self.limit // 16)
        if 2 * (running + waiting) >= self.limit:  # the server has taken most of what was sent
            return self.limit * 2
        # The server has not read most of the last step's requests yet (a loaded machine):
        # grow by a quarter rather than wait for it, or hold a fast server back.
        return self.limit + max(1, self.limit // 4)

    async def run(self) -> None:
        """Poll ``/metrics`` and adjust the limit until cancelled."""
        depth = queue_depth(await self._read())
        if depth is None:
            self.adaptive = False
            self._set(self.cap)
            return
        while True:
            if depth is not None:
                self._set(self.decide(*depth))
            await asyncio.sleep(POLL_S if self._slow_start else STEADY_POLL_S)
            depth = queue_depth(await self._read())  # None while the server is away: hold
