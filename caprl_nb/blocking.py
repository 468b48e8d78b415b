"""A call that blocks while its event loop runs on a thread of its own.

``df.caprl.caption`` and ``verify`` are plain blocking calls, in a terminal and in a Jupyter
kernel alike (a kernel already runs an event loop on its main thread, so a batch cannot use
that one). :func:`run_blocking` runs a coroutine on a new loop in a daemon thread, calls
``tick`` ten times a second on the caller's thread (a progress bar), and turns Ctrl-C into a
prompt, orderly stop: ``cancel`` is called on the loop's thread, the work gets ``stop_wait_s``
to finish what it is writing, and a :class:`KeyboardInterrupt` carries ``stopped()``'s note on
how to resume. ``close`` runs on the loop's thread after its last act (the thread that writes
closes the store, never the caller under a write in progress).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["STOP_WAIT_S", "run_blocking"]

_T = TypeVar("_T")
STOP_WAIT_S = 30.0
TICK_S = 0.1


def run_blocking(
    main: Callable[[], Coroutine[Any, Any, _T]],
    *,
    name: str,
    cancel: Callable[[], None],
    close: Callable[[], None],
    stopped: Callable[[bool], str],
    tick: Callable[[], None] = lambda: None,
    stop_wait_s: float = STOP_WAIT_S,
) -> _T:
    """``main()``'s result, run to the end on its own loop and thread (see the module's doc).

    ``stopped(still_writing)`` is the note for an interrupted run; ``still_writing`` is True
    when the work had not ended ``stop_wait_s`` after it was cancelled. An exception raised by
    the work is raised here.
    """
    outcome: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    # Set by the thread as its very last act. Waited on instead of Thread.join, which a
    # KeyboardInterrupt can leave believing a running thread has ended (CPython before 3.13).
    ended = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread below
            outcome["error"] = exc
        finally:
            loop.close()
            close()
            ended.set()

    thread = threading.Thread(target=target, name=name, daemon=True)
    try:
        try:
            thread.start()
            while not ended.wait(TICK_S):
                tick()
        except KeyboardInterrupt:
            with contextlib.suppress(RuntimeError):  # a closed loop: the work ended as the interrupt came
                loop.call_soon_threadsafe(cancel)
            running = thread.ident is not None
            if running:
                ended.wait(stop_wait_s)
            tick()
            msg = stopped(running and not ended.is_set())
            print(msg, file=sys.stderr)
            raise KeyboardInterrupt(msg) from None
        tick()
    finally:
        if thread.ident is None:  # never started: nothing else will close them
            loop.close()
            close()
    if "error" in outcome:
        raise outcome["error"]
    value: _T = outcome["value"]
    return value
