"""Waiting in tests: poll a condition with a deadline (never a fixed sleep), and record widget messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 20.0, what: str = "the condition",
               interval: float = 0.01) -> T:
    """Call ``condition()`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(interval)


class Recorder:
    """Stands in for ``widget.send``: what would go to the front end, with its buffers."""

    def __init__(self) -> None:
        self.messages: list[tuple[dict[str, Any], list[bytes]]] = []
        self._lock = threading.Lock()

    def __call__(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        with self._lock:
            self.messages.append((content, list(buffers or [])))

    def of(self, kind: str) -> list[tuple[dict[str, Any], list[bytes]]]:
        with self._lock:
            return [m for m in self.messages if m[0]["type"] == kind]

    def last(self, kind: str) -> dict[str, Any]:
        return self.of(kind)[-1][0]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 20) -> list[tuple[dict, list]]:
        wait_until(lambda: len(self.of(kind)) >= count, timeout, f"{count} {kind!r} message(s)")
        return self.of(kind)
