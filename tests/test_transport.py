"""caprl_nb.transport: the chat-completion connection pool against scripted loopback servers.

Each server here is a raw asyncio TCP server that reads one request (head and Content-Length
body) and answers with exactly the bytes a test scripts, so framing, keep-alive and failure
cases are checked byte for byte; the end-to-end path runs against the vLLM simulator and the
real tiny vLLM in test_client / test_vllm_e2e.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from caprl_nb.transport import ConnectionPool, proxied

Answer = Callable[[int, bytes, bytes], "bytes | None"]  # (request number, head, body) -> bytes or None


@dataclass
class Scripted:
    url: str
    connections: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    return head, body


@asynccontextmanager
async def scripted(answer: Answer, *, close_after: bool = False) -> AsyncIterator[Scripted]:
    """A server answering each request with ``answer(n, head, body)``; None closes the connection
    without a word. ``close_after`` closes each connection after its first answer."""
    state = Scripted(url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                state.requests.append(request)
                data = answer(len(state.requests), *request)
                if data is None:
                    return
                writer.write(data)
                await writer.drain()
                if close_after:
                    return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield state
    finally:
        server.close()


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body,
    )


def pool(url: str, read_timeout: float = 5.0) -> ConnectionPool:
    return ConnectionPool(url, headers={"Authorization": "Bearer k"}, connect_timeout=2.0, read_timeout=read_timeout)


def test_a_post_sends_the_body_and_headers_and_reuses_one_connection() -> None:
    async def main() -> None:
        async with scripted(lambda n, head, body: ok(b'{"n": %d}' % n)) as server:
            p = pool(server.url)
            answers = [await p.post("/chat/completions", b'{"x": %d}' % i) for i in range(5)]
            await p.aclose()
        assert [a.body for a in answers] == [b'{"n": %d}' % (i + 1) for i in range(5)]
        assert all(a.status == 200 and a.headers["content-type"] == "application/json" for a in answers)
        assert server.connections == 1  # kept alive
        head, body = server.requests[0]
        assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"\r\nHost: 127.0.0.1:" in head and b"\r\nAuthorization: Bearer k\r\n" in head
        assert b"\r\nContent-Length: 8\r\n" in head and body == b'{"x": 0}'

    asyncio.run(main())


def test_requests_in_flight_at_once_each_get_a_connection_and_their_own_answer() -> None:
    async def main() -> None:
        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (request := await _read_request(reader)) is not None:
                await asyncio.sleep(0.05)
                writer.write(ok(request[1]))  # echo: each answer names its request
            writer.close()

        server = await asyncio.start_server(slow, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        p = pool(url)
        bodies = [b'{"i": %d}' % i for i in range(40)]
        answers = await asyncio.gather(*(p.post("/x", b) for b in bodies))
        assert [a.body for a in answers] == bodies
        assert len(p._open) == 40 and len(p._idle) == 40
        again = await asyncio.gather(*(p.post("/x", b) for b in bodies))  # reuses them
        assert [a.body for a in again] == bodies and len(p._open) == 40
        await p.aclose()
        assert not p._open
        server.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (
            b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n5;x=1\r\n: 1}\n\r\n0\r\nT: v\r\n\r\n',
            b'{"a": 1}\n',
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"[1]"), b"[1]"),
        (ok(gzip.compress(b'{"z": 1}'), b"Content-Encoding: gzip\r\n"), b'{"z": 1}'),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
    ids=["chunked-with-extension-and-trailer", "100-continue-skipped", "gzip", "204"],
)
def test_framings_a_server_or_proxy_may_use(raw: bytes, body: bytes) -> None:
    async def main() -> None:
        async with scripted(lambda n, h, b: raw) as server:
            p = pool(server.url)
            first = await p.post("/c", b"{}")
            second = await p.post("/c", b"{}")
            await p.aclose()
        assert first.body == body and second.body == body
        assert server.connections == 1

    asyncio.run(main())


def test_a_body_that_runs_to_the_end_of_the_connection_and_connection_close() -> None:
    async def main() -> None:
        async with scripted(lambda n, h, b: b"HTTP/1.1 200 OK\r\n\r\n{\"eof\": 1}", close_after=True) as s1:
            p = pool(s1.url)
            assert (await p.post("/c", b"{}")).body == b'{"eof": 1}'
            assert (await p.post("/c", b"{}")).body == b'{"eof": 1}'
            await p.aclose()
        assert s1.connections == 2
        closing = ok(b"{}", b"Connection: close\r\n")
        async with scripted(lambda n, h, b: closing) as s2:
            p = pool(s2.url)
            for _ in range(3):
                assert (await p.post("/c", b"{}")).status == 200
            await p.aclose()
        assert s2.connections == 3  # "Connection: close" is honoured: never reused

    asyncio.run(main())


def test_an_idle_connection_the_server_dropped_is_replaced_without_an_error() -> None:
    async def main() -> None:
        async with scripted(lambda n, h, b: ok(), close_after=True) as server:  # closes while idle
            p = pool(server.url)
            for _ in range(3):
                assert (await p.post("/c", b"{}")).status == 200
                # the server's close reaches the client while the connection is idle
                deadline = asyncio.get_running_loop().time() + 5
                while p._idle and p._idle[-1].reusable:
                    assert asyncio.get_running_loop().time() < deadline, "the close never arrived"
                    await asyncio.sleep(0.001)
            await p.aclose()
        assert server.connections == 3 and len(server.requests) == 3

    asyncio.run(main())


def test_a_kept_alive_connection_closed_as_the_request_goes_out_is_retried_once_on_a_new_one() -> None:
    async def main() -> None:
        # The second request reaches a server that closes without answering (what a keep-alive
        # timeout racing the request looks like); the pool sends it again on a new connection.
        async with scripted(lambda n, h, b: None if n == 2 else ok(b"%d" % n)) as server:
            p = pool(server.url)
            assert (await p.post("/c", b"{}")).body == b"1"
            assert (await p.post("/c", b"{}")).body == b"3"
            await p.aclose()
        assert server.connections == 2

    asyncio.run(main())


def test_failures_are_httpx_errors_the_retry_policy_knows() -> None:
    async def main() -> None:
        # a new connection closed without an answer
        async with scripted(lambda n, h, b: None) as server:
            with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
                await pool(server.url).post("/c", b"{}")
        # cut in the middle of the body
        async with scripted(lambda n, h, b: ok(b'{"long": "answer"}')[:-5], close_after=True) as server:
            with pytest.raises(httpx.RemoteProtocolError, match=r"not valid HTTP/1\.1: the body ended after"):
                await pool(server.url).post("/c", b"{}")
        # not HTTP
        async with scripted(lambda n, h, b: b"SSH-2.0-OpenSSH\r\n\r\n") as server:
            with pytest.raises(httpx.RemoteProtocolError, match="status line"):
                await pool(server.url).post("/c", b"{}")
        # no answer in time: ReadTimeout, and the connection is not reused
        async with scripted(lambda n, h, b: b"") as server:
            p = pool(server.url, read_timeout=0.2)
            with pytest.raises(httpx.ReadTimeout, match=r"no answer within 0\.2 s"):
                await p.post("/c", b"{}")
            assert not p._idle
        # nothing listening
        async with scripted(lambda n, h, b: ok()) as server:
            url = server.url
        with pytest.raises(httpx.ConnectError):
            await pool(url).post("/c", b"{}")

    asyncio.run(main())


def test_a_cancelled_request_closes_its_connection() -> None:
    async def main() -> None:
        async with scripted(lambda n, h, b: b"") as server:  # never answers
            p = pool(server.url)
            task = asyncio.ensure_future(p.post("/c", b"{}"))
            while not server.requests:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not p._open and not p._idle
            await p.aclose()

    asyncio.run(main())


def test_bad_settings_are_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        ConnectionPool("ftp://x/v1", headers={}, connect_timeout=1, read_timeout=1)
    with pytest.raises(ValueError, match="line break"):
        ConnectionPool("http://x/v1", headers={"Authorization": "Bearer a\r\nX: y"}, connect_timeout=1, read_timeout=1)


def test_proxied_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert not proxied("http://gpu-box:8000/v1")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert proxied("http://gpu-box:8000/v1") and not proxied("https://gpu-box/v1")
    monkeypatch.setenv("NO_PROXY", "gpu-box")
    assert not proxied("http://gpu-box:8000/v1")
