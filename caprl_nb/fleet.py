"""Several servers in one call: each request goes to the server with the most room, and the
rows of a server that stops answering move to the others.

A :class:`Lane` is one server: its client, its health watch (:mod:`caprl_nb.health`) and its
pacer (:mod:`caprl_nb.pacing`, which reads that server's ``/metrics`` queue). A request takes
the lane whose pacer has the most free places (fewest outstanding requests against its limit),
so a faster or emptier server gets more of them.

With one server nothing changes: a request that cannot reach it waits on the batch's one watch
(up to ``outage_timeout``) as before. With several, a request that cannot reach its server asks
that server once; if it does not answer, the lane is marked down, a watch probes it in the
background, and the request goes to another lane at once (it had no answer, so nothing is sent
twice after an answer). A lane that answers again, serving the same checkpoint, takes requests
again; one that stays away past ``outage_timeout`` (or comes back with another checkpoint) is
retired. When every lane is retired the batch ends with one error, as with one server.

All servers of one call must serve the same checkpoint, compared before any row is sent
(:func:`check_same_checkpoint`): results are keyed by it, so rows answered by any of them are
found again by any of them.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from caprl_nb.client import INFO_TIMEOUT, CapRLClient, ServerInfo
from caprl_nb.errors import CapRLError, CheckpointChangedError, ConfigError, ServerUnavailableError
from caprl_nb.health import ServerWatch
from caprl_nb.pacing import Pacer

__all__ = [
    "Fleet", "Lane", "MixedCheckpointsError", "ServerMoved", "check_same_checkpoint", "connect_all", "open_lane",
    "short_name",
]


class MixedCheckpointsError(ConfigError):
    """The servers of one call serve different checkpoints."""


class ServerMoved(Exception):
    """Internal: this lane's server is down; send the request to another lane."""


def short_name(base_url: str) -> str:
    """``host:port`` of a server URL, for progress and messages."""
    parts = urllib.parse.urlsplit(base_url)
    return parts.netloc or base_url


def check_same_checkpoint(infos: Sequence[ServerInfo]) -> None:
    """Refuse servers that serve different checkpoints (before any row is sent)."""
    seen = {info.checkpoint for info in infos}
    if len(seen) <= 1:
        return
    listing = "; ".join(f"{info.base_url} serves {info.checkpoint!r}" for info in infos)
    msg = (
        f"The servers of this call serve different checkpoints ({listing}). Results are keyed by "
        "the checkpoint that answers, so one call must use servers that all serve the same one: "
        "pass only those as base_url=, or run one call per checkpoint."
    )
    raise MixedCheckpointsError(msg)


async def connect_all(
    clients: Sequence[CapRLClient], connect: Callable[[CapRLClient], Awaitable[ServerInfo]],
    note: Callable[[str], None], outage_timeout: float,
) -> list[ServerInfo | None]:
    """Every server's account of itself (``connect``), asked at once: None for one that does not
    answer while another does (``note`` says so; it may join later). All that answer must serve
    one checkpoint (:class:`MixedCheckpointsError` otherwise); a setting that cannot work (the
    model, the API key) raises at once, and so does the first server's error when none answers."""
    if len(clients) == 1:
        return [await connect(clients[0])]
    found = await asyncio.gather(*(connect(c) for c in clients), return_exceptions=True)
    for outcome in found:
        if isinstance(outcome, BaseException) and not isinstance(outcome, ServerUnavailableError):
            raise outcome  # a setting that cannot work (model, API key): say so at once
    infos = [None if isinstance(o, BaseException) else o for o in found]
    answered = [info for info in infos if info is not None]
    if not answered:
        first = found[0]
        assert isinstance(first, BaseException)
        raise first
    check_same_checkpoint(answered)
    for client, outcome in zip(clients, found):
        if isinstance(outcome, BaseException):
            note(
                f"The server at {client.settings.base_url} did not answer at the start ({outcome}); "
                f"this call went on with the others and gave it up to {outage_timeout:g} s "
                "(outage_timeout=) to join."
            )
    return infos


def open_lane(
    client: CapRLClient, info: ServerInfo | None, cap: int, checkpoint: str, model: str | None,
    outage_timeout: float, on_change: Callable[[str], None] | None = None,
) -> Lane:
    """One server's lane: its client, a pacer of at most ``cap`` requests in flight, and a health
    watch whose probe checks the server (still) serves ``checkpoint`` (``info``: None for a
    server that did not answer at the start; :meth:`Fleet.mark_down` it)."""
    lane: Lane | None = None

    async def probe() -> None:
        assert lane is not None
        found = await client.server_info(lane.info.model if lane.info else model)
        if found.checkpoint != checkpoint:
            msg = (
                f"The server at {client.settings.base_url} came back serving {found.checkpoint!r}, "
                f"not {checkpoint!r} that answered this call's other requests; requests not "
                "finished by then were not run. Finished ones are kept; run the call again to "
                "do the rest with the new checkpoint."
            )
            raise CheckpointChangedError(msg)
        lane.info = found

    watch = ServerWatch(probe, client.settings.base_url, outage_timeout, on_change=on_change)
    lane = Lane(client=client, pacer=Pacer(cap, client.metrics), watch=watch, probe=probe, info=info)
    return lane


@dataclass(eq=False)
class Lane:
    """One server of the call."""

    client: CapRLClient
    pacer: Pacer
    watch: ServerWatch
    probe: Callable[[], Awaitable[None]]
    info: ServerInfo | None = None
    down: bool = False  # not answering; a background watch probes it
    retired: BaseException | None = None  # gone for this call
    answered: int = 0  # answers received from it (the progress bar's per-server count)
    _watching: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return short_name(self.client.settings.base_url)

    @property
    def usable(self) -> bool:
        return not self.down and self.retired is None and self.watch.dead is None


class Fleet:
    """The lanes of one batch (one event loop)."""

    def __init__(self, lanes: Sequence[Lane], on_change: Callable[[str], None] | None = None) -> None:
        self.lanes = list(lanes)
        self._on_change = on_change
        self._verdict: ServerUnavailableError | None = None
        for lane in self.lanes:
            lane.client.watch = _LaneWatch(self, lane) if self.several else lane.watch

    @property
    def several(self) -> bool:
        return len(self.lanes) > 1

    @property
    def dead(self) -> ServerUnavailableError | None:
        """The batch's verdict: every server is gone (the one lane's own verdict, with one)."""
        if not self.several:
            return self.lanes[0].watch.dead
        return self._verdict

    @property
    def outages(self) -> int:
        return sum(lane.watch.outages for lane in self.lanes)

    async def pick(self) -> Lane:
        """The lane to send the next request to: the usable one with the most free places."""
        if not self.several:
            return self.lanes[0]
        while True:
            usable = [lane for lane in self.lanes if lane.usable]
            if usable:
                return max(usable, key=lambda lane: lane.pacer.limit - lane.pacer.in_flight)
            if self._verdict is None and all(lane.retired is not None or lane.watch.dead for lane in self.lanes):
                names = ", ".join(lane.client.settings.base_url for lane in self.lanes)
                reasons = "; ".join(str(lane.retired or lane.watch.dead) for lane in self.lanes)
                msg = (
                    f"Every server of this call stopped answering ({names}); rows not finished by "
                    f"then were not run. Finished rows are kept: restart a server and run the same "
                    f"call again to do only the rest. ({reasons})"
                )
                self._verdict = ServerUnavailableError(msg)
            if self._verdict is not None:
                raise self._verdict
            await asyncio.sleep(0.1)  # every lane is down, some may come back: wait for one

    def mark_down(self, lane: Lane, error: BaseException) -> None:
        """Take ``lane`` out until its watch sees it answer again (or retires it)."""
        if lane.down or lane.retired is not None:
            return
        lane.down = True
        if self._on_change is not None:
            self._on_change(f"the server at {lane.client.settings.base_url} stopped answering; "
                            "its rows go to the other servers")
        lane._watching = asyncio.ensure_future(self._watch(lane, error))

    async def _watch(self, lane: Lane, error: BaseException) -> None:
        try:
            await lane.watch.lost(error)
        except ServerUnavailableError as exc:  # past outage_timeout, or another checkpoint
            lane.retired = exc
            return
        finally:
            lane.down = lane.retired is not None or lane.watch.dead is not None
        if self._on_change is not None:
            self._on_change(f"the server at {lane.client.settings.base_url} answers again and gets rows again")

    def close(self) -> None:
        for lane in self.lanes:
            lane.watch.close()
            if lane._watching is not None and not lane._watching.done():
                lane._watching.cancel()


class _LaneWatch:
    """The health watch a lane's client consults when there are several lanes (client.Watch)."""

    def __init__(self, fleet: Fleet, lane: Lane) -> None:
        self.fleet = fleet
        self.lane = lane

    async def ready(self) -> None:
        if not self.lane.usable:
            raise ServerMoved

    async def lost(self, error: BaseException) -> bool:
        lane = self.lane
        if not lane.usable:
            raise ServerMoved
        try:  # one quick question: is the server there at all?
            await asyncio.wait_for(lane.probe(), INFO_TIMEOUT)
        except CheckpointChangedError as exc:
            lane.retired = exc
            raise ServerMoved from None
        except (CapRLError, asyncio.TimeoutError, OSError):
            self.fleet.mark_down(lane, error)
            raise ServerMoved from None
        return False  # it answers: the failure was this request's own
