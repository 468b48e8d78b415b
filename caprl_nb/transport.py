"""HTTP/1.1 for the chat-completion hot path: keep-alive connections on asyncio's protocols.

Why not httpx here (it still serves everything else, see :mod:`caprl_nb.client`): with a few
hundred requests in flight, httpcore's pool checks every connection on every request and every
response (a ``getpeername`` system call and several layers of anyio per connection), and each
request passes through httpx's redirect, auth and cookie machinery. Measured on two cores with
256 requests in flight, that was about half of the client's CPU per image, more than reading,
hashing and base64-encoding the image together (``bench/request_path.py``).

What a chat completion needs is small: one POST with a body that is already bytes, a small JSON
answer framed by ``Content-Length`` (or chunked, behind some proxies), connections kept alive
and reused. A connection learns that the server closed it from the event loop (``eof_received``
/ ``connection_lost``), so picking an idle one costs no system call. Errors are httpx's
exception classes, so the client's retry policy treats both paths alike.

Only :mod:`caprl_nb.client` uses this module.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping
from typing import NamedTuple

import httpx

__all__ = ["ConnectionPool", "Response", "proxied"]

# A response head longer than this is not from a model server.
MAX_HEAD = 64 * 1024


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes


def proxied(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (HTTP_PROXY, HTTPS_PROXY,
    ALL_PROXY, NO_PROXY, as httpx reads them); such requests go through httpx instead."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


_SSL: list[ssl.SSLContext] = []


def _ssl_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's bundle, SSL_CERT_FILE / SSL_CERT_DIR), built once
    per process: building one costs tens of milliseconds."""
    if not _SSL:
        _SSL.append(httpx.create_ssl_context())
    return _SSL[0]


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one origin, as many as there are requests in flight.

    The pool opens a connection when no idle one is left, so it never makes a request wait for
    another; the caller bounds how many requests are in flight.
    """

    def __init__(
        self, base_url: str, *, headers: Mapping[str, str], connect_timeout: float, read_timeout: float,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL, not {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if default_port else f"{host}:{self.port}"
        lines = [f"Host: {authority}", "Accept: application/json", "User-Agent: caprl-nb"]
        for name, value in headers.items():
            if any(c in f"{name}{value}" for c in "\r\n\0"):
                raise ValueError(f"the {name} header has a line break or NUL in it")
            lines.append(f"{name}: {value}")
        self._headers = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._closed = False

    async def post(self, path: str, body: bytes) -> Response:
        """POST ``body`` to ``path`` (relative to the base URL's path); the whole response."""
        head = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (
            (self.path + path).encode("ascii"), self._headers, len(body),
        )
        conn = self._take()
        if conn is not None:
            try:
                return self._finish(conn, await conn.exchange(head, body, self.read_timeout))
            except _Stale:
                pass  # the server dropped the idle connection as the request went out: new one
        conn = await self._connect()
        try:
            response = await conn.exchange(head, body, self.read_timeout)
        except _Stale as exc:
            raise httpx.RemoteProtocolError(str(exc)) from None
        return self._finish(conn, response)

    def _take(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()  # the most recently used: least likely to have timed out
            if conn.reusable:
                return conn
            conn.close()
        return None

    def _finish(self, conn: _Connection, response: tuple[Response, bool]) -> Response:
        result, keep = response
        if keep and not self._closed and conn.reusable:
            self._idle.append(conn)
        else:
            conn.close()
        return result

    async def _connect(self) -> _Connection:
        if self._closed:
            raise httpx.ConnectError("the connection pool is closed")
        loop = asyncio.get_running_loop()
        ctx = _ssl_context() if self.scheme == "https" else None
        conn = _Connection(loop, self._open)
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn, self.host, self.port, ssl=ctx, server_hostname=self.host if ctx else None,
                ),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            conn.close()
            raise httpx.ConnectTimeout(
                f"no connection to {self.host}:{self.port} within {self.connect_timeout:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()


class _Stale(Exception):
    """A kept-alive connection closed before any byte of the answer arrived."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its response parsed as bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: set[_Connection]) -> None:
        self._loop = loop
        self._registry = registry
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[Response, bool]] | None = None
        self._head: tuple[str, int, dict[str, str]] | None = None
        self._eof = False
        self._used = False  # has answered a request: a failure before any byte means "stale"
        self._got_bytes = False
        self.reusable = False

    # -- protocol callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._registry.add(self)
        self.reusable = True

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing asked: a server talking out of turn is not reused
            self.close()
            return
        self._buf += data
        self._got_bytes = True
        self._advance()

    def eof_received(self) -> bool:
        self._eof = True
        self.reusable = False
        if self._waiter is not None and self._got_bytes:  # no byte at all: connection_lost says
            self._advance()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._registry.discard(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if not self._got_bytes:
                said = "the server closed the connection without answering"
                waiter.set_exception(_Stale(said) if self._used else httpx.RemoteProtocolError(said))
            elif exc is not None:
                waiter.set_exception(httpx.ReadError(f"the connection broke: {exc}"))
            else:
                waiter.set_exception(httpx.RemoteProtocolError("the server closed the connection mid-answer"))

    # -- one exchange ---------------------------------------------------------------------
    async def exchange(self, head: bytes, body: bytes, timeout: float) -> tuple[Response, bool]:
        """Send one request; the response and whether the connection may be reused."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise _Stale("the connection was closed") if self._used else httpx.ConnectError("not connected")
        self.reusable = False
        self._buf.clear()
        self._head = None
        self._got_bytes = False
        waiter: asyncio.Future[tuple[Response, bool]] = self._loop.create_future()
        self._waiter = waiter
        transport.write(head)
        transport.write(body)
        timer = self._loop.call_later(timeout, self._timed_out, timeout)
        try:
            return await waiter
        except asyncio.CancelledError:
            self.close()  # the answer may still come: this connection cannot be reused
            raise
        finally:
            timer.cancel()
            self._waiter = None
            self._used = True

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.abort()
        self._registry.discard(self)

    def _timed_out(self, timeout: float) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(httpx.ReadTimeout(f"no answer within {timeout:g} s"))
        self.close()

    def _fail(self, message: str) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(httpx.RemoteProtocolError(message))
        self.close()

    def _advance(self) -> None:
        """Resolve the waiter when the buffer holds a whole response."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            done = self._parse()
        except ValueError as exc:
            self._fail(f"the server's answer is not valid HTTP/1.1: {exc}")
            return
        if done is not None:
            waiter.set_result(done)

    def _parse(self) -> tuple[Response, bool] | None:
        buf = self._buf
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise ValueError(f"a response head over {MAX_HEAD} bytes")
                if self._eof:
                    raise ValueError("the connection closed inside the response head")
                return None
            head = self._read_head(bytes(buf[:end]))
            del buf[: end + 4]
            if not 100 <= head[1] < 200:  # skip informational answers (100 Continue)
                self._head = head
        version, status, headers = self._head
        framing = headers.get("transfer-encoding", "").lower()
        keep = (
            version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        ) or (version == "HTTP/1.0" and "keep-alive" in headers.get("connection", "").lower())
        if "chunked" in framing:
            body = self._chunked()
            if body is None:
                return None
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"].split(",")[0])
            except ValueError:
                raise ValueError(f"Content-Length {headers['content-length']!r}") from None
            if len(buf) < length:
                if self._eof:
                    raise ValueError(f"the body ended after {len(buf)} of {length} bytes")
                return None
            body = bytes(buf[:length])
            del buf[:length]
        elif status in (204, 304):
            body = b""
        else:  # no framing: the body runs to the end of the connection
            if not self._eof:
                return None
            body, keep = bytes(buf), False
            buf.clear()
        encoding = headers.get("content-encoding", "").lower().strip()
        if encoding in ("gzip", "deflate"):
            try:
                body = zlib.decompress(body, 47)  # 47: gzip or zlib header, detected
            except zlib.error as exc:
                raise ValueError(f"a {encoding} body that does not decompress ({exc})") from None
        transport = self._transport
        if buf or self._eof or transport is None or transport.get_write_buffer_size():
            keep = False  # extra bytes, a half-sent request or a closing peer: not reused
        self.reusable = keep
        return Response(status, headers, body), keep

    @staticmethod
    def _read_head(raw: bytes) -> tuple[str, int, dict[str, str]]:
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise ValueError(f"status line {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ValueError(f"header line {line[:80]!r}")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return version, int(rest[:3]), headers

    def _chunked(self) -> bytes | None:
        """The de-chunked body once the buffer holds all of it (trailers dropped)."""
        buf = self._buf
        pos = 0
        pieces: list[bytes] = []
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                self._short("a chunk size")
                return None
            size_text = bytes(buf[pos:end]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ValueError(f"chunk size {size_text[:20]!r}") from None
            pos = end + 2
            if size == 0:
                while True:  # trailers, up to the empty line
                    end = buf.find(b"\r\n", pos)
                    if end < 0:
                        self._short("the trailers")
                        return None
                    if end == pos:
                        del buf[: end + 2]
                        return b"".join(pieces)
                    pos = end + 2
            if len(buf) < pos + size + 2:
                self._short("a chunk")
                return None
            pieces.append(bytes(buf[pos : pos + size]))
            if buf[pos + size : pos + size + 2] != b"\r\n":
                raise ValueError("a chunk not followed by CRLF")
            pos += size + 2

    def _short(self, what: str) -> None:
        """More bytes are needed, unless the connection is closing: then the answer is cut."""
        if self._eof:
            raise ValueError(f"the connection closed inside {what}")
