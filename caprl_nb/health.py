"""Server health for a whole batch: one outage is one event, not one failure per row.

When a request cannot reach the server (connection refused or reset, or a proxy's 502/503/504),
the first row to notice starts *one* probe loop and every row waits on it instead of spending
its own retries. If the server answers again within ``outage_timeout`` seconds (a proxy blip, a
quick restart) and still serves the same checkpoint, the rows go on and nothing is lost. If it
does not, the watch gives the server up: every waiting and unstarted row fails at once with one
error that names the server, so a dead server ends a batch of any size in seconds.

The probe is whatever the batch passes in (``/v1/models`` plus an identity check); this module
speaks no HTTP itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from caprl_nb.errors import CapRLError, CheckpointChangedError, ServerUnavailableError

__all__ = ["PROBE_INTERVAL", "ServerWatch"]

# Seconds between two probes of a server that is down.
PROBE_INTERVAL = 0.5


class ServerWatch:
    """Shared by every row of one batch (one event loop); see the module docstring."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        base_url: str,
        outage_timeout: float,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._probe = probe  # returns when the server answers as before; raises otherwise
        self.base_url = base_url
        self.outage_timeout = outage_timeout
        self._on_change = on_change
        self._up = asyncio.Event()
        self._up.set()
        self._probing: asyncio.Task[bool] | None = None
        self.dead: ServerUnavailableError | None = None
        self.outages = 0

    async def ready(self) -> None:
        """Return when requests may be sent; raise the batch's verdict once the server is gone."""
        if not self._up.is_set():
            await self._up.wait()
        if self.dead is not None:
            raise self.dead

    async def lost(self, error: BaseException) -> bool:
        """A request could not reach the server. Wait for the verdict.

        Returns True when the server was down and answers again (the request should be sent
        again without counting it as a retry), False when the server answered the first probe
        at once (the failure was this request's own: count it as usual). Raises
        :class:`ServerUnavailableError` when the server did not come back in time.
        """
        if self.dead is not None:
            raise self.dead
        if self._probing is None or self._probing.done():
            self._up.clear()
            self._probing = asyncio.ensure_future(self._watch(error))
        was_down = await asyncio.shield(self._probing)
        if self.dead is not None:
            raise self.dead
        return was_down

    async def _watch(self, error: BaseException) -> bool:
        """Probe until the server answers (returns whether it was down) or the window closes."""
        started_wall = time.strftime("%H:%M:%S")
        deadline = time.monotonic() + self.outage_timeout
        was_down = False
        cause = str(getattr(error, "__cause__", None) or error) or type(error).__name__
        try:
            while True:
                try:
                    await asyncio.wait_for(self._probe(), max(0.1, deadline - time.monotonic()))
                    if was_down and self._on_change is not None:
                        self._on_change(f"the server at {self.base_url} answers again")
                    return was_down
                except CheckpointChangedError as exc:
                    self.dead = exc
                    return True
                except (CapRLError, asyncio.TimeoutError, OSError):
                    if not was_down:
                        was_down = True
                        self.outages += 1
                        if self._on_change is not None:
                            self._on_change(
                                f"the server at {self.base_url} stopped answering ({cause}); "
                                f"waiting up to {self.outage_timeout:g} s for it"
                            )
                left = deadline - time.monotonic()
                if left <= 0:
                    msg = (
                        f"The server at {self.base_url} stopped answering at {started_wall} "
                        f"({cause}) and did not come back within {self.outage_timeout:g} s; rows "
                        "not finished by then were not run. Finished rows are kept: restart the "
                        "server and run the same call again to do only the rest (outage_timeout= "
                        "or CAPRL_OUTAGE_TIMEOUT waits longer)."
                    )
                    self.dead = ServerUnavailableError(msg)
                    return True
                await asyncio.sleep(min(PROBE_INTERVAL, left))
        finally:
            self._up.set()

    def close(self) -> None:
        if self._probing is not None and not self._probing.done():
            self._probing.cancel()
