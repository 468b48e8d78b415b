"""http(s) image downloads: one total deadline, a byte cap, and URLs shown without their secrets.

:func:`fetch` is synchronous (the batch calls it from worker threads) but runs the download on
one event loop per process, so the deadline covers everything (connect, redirects, headers,
body) and is enforced by cancelling the request: a server that trickles one byte a second, in
its headers or its body, fails when ``timeout`` runs out, not after one read timeout per byte.
Connections are pooled across calls. Given a remembered ETag or Last-Modified, :func:`fetch`
asks the server whether the content changed (If-None-Match / If-Modified-Since); an answer of
304 Not Modified comes back as ``Fetched.not_modified``, with no body.

:func:`public_url` is what a URL may look like anywhere it is stored or shown (the store's
``input``, error messages, progress): no user:password, no query string (presigned S3/GCS/Azure
tokens live there), no fragment. The content hash, not the URL, keys the result store.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import urllib.parse
from dataclasses import dataclass

import httpx

from caprl_nb.__about__ import __version__
from caprl_nb.errors import ImageDecodeError, ImageNotFoundError, ImageTooLargeError

__all__ = ["Fetched", "check_cap", "fetch", "public_url"]

MAX_REDIRECTS = 10


@dataclass(frozen=True)
class Fetched:
    """A downloaded body and what the server said it is."""

    data: bytes  # empty when not_modified
    content_type: str | None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False  # a 304 to a conditional request: the remembered content is current


def public_url(url: str) -> str:
    """``url`` without user info, query string or fragment; never raises."""
    text = url.strip()
    scheme = text.split(":", 1)[0] if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", text) else "URL"
    unparsable = f"{scheme}://(an address that does not parse; check the URL)"
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        # an unbalanced [ in the host, or "http://user:pa?ss@host" (an unescaped ? or / cut the
        # password in two): no part of it can be shown safely
        return unparsable
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _scrub(text: str, url: str) -> str:
    """``text`` (an exception message) with ``url`` and its query string replaced."""
    shown = public_url(url)
    text = text.replace(url.strip(), shown)
    query = url.strip().split("#", 1)[0].partition("?")[2]
    return text.replace(query, "...") if query else text


_LOCK = threading.Lock()
_LOOPS: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}  # by process id (fork)


def _loop() -> tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]:
    with _LOCK:
        pid = os.getpid()
        if pid not in _LOOPS:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="caprl-nb-fetch", daemon=True).start()
            headers = {"User-Agent": f"caprl-nb/{__version__} (+https://github.com/internlm/CapRL)"}
            client = httpx.AsyncClient(follow_redirects=True, max_redirects=MAX_REDIRECTS, headers=headers)
            _LOOPS[pid] = (loop, client)
        return _LOOPS[pid]


def fetch(
    url: str, *, max_bytes: int, timeout: float, etag: str | None = None, last_modified: str | None = None
) -> Fetched:
    """Download ``url`` within ``timeout`` seconds in all and at most ``max_bytes`` bytes.

    With ``etag`` or ``last_modified`` (what the server sent with the content last time) the
    request is conditional, and a 304 answer returns ``Fetched(b"", ..., not_modified=True)``.

    Raises :class:`ImageNotFoundError` (HTTP errors, no answer, too slow, redirect loops),
    :class:`ImageTooLargeError` (over ``max_bytes``, declared or streamed) and
    :class:`ImageDecodeError` (an empty body). Messages name the URL as :func:`public_url` shows it.
    """
    loop, client = _loop()
    progress = _Progress()
    download = _download(client, url, max_bytes, timeout, progress, _conditions(etag, last_modified))
    future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(download, timeout), loop)
    desc = f"URL {public_url(url)}"
    try:
        return future.result(timeout + 5)  # wait_for ends it at `timeout`; this guards the guard
    except (asyncio.TimeoutError, TimeoutError) as exc:
        future.cancel()
        if progress.answered:
            msg = f"{desc} was still downloading after {timeout:g} s ({progress.received:,} B so far). "
            msg += "Pass a larger url_timeout=, or download it first."
        else:
            msg = f"{desc} did not answer within {timeout:g} s. Check the address, or pass a larger url_timeout=."
        raise ImageNotFoundError(msg) from exc


def _conditions(etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


@dataclass
class _Progress:
    answered: bool = False
    received: int = 0


async def _download(
    client: httpx.AsyncClient, url: str, max_bytes: int, timeout: float, progress: _Progress,
    conditions: dict[str, str],
) -> Fetched:
    desc = f"URL {public_url(url)}"
    buf = bytearray()
    try:
        async with client.stream("GET", url, headers=conditions, timeout=httpx.Timeout(timeout)) as resp:
            progress.answered = True
            if resp.status_code == 304 and conditions:
                return Fetched(b"", None, etag=resp.headers.get("etag"),
                               last_modified=resp.headers.get("last-modified"), not_modified=True)
            if resp.status_code >= 400:
                raise ImageNotFoundError(_status_message(desc, resp.status_code, resp.reason_phrase))
            declared = resp.headers.get("content-length", "")
            if declared.isdigit():
                check_cap(int(declared), max_bytes, desc)
            async for chunk in resp.aiter_bytes():
                buf += chunk
                progress.received = len(buf)
                check_cap(len(buf), max_bytes, f"{desc} (so far)")
            content_type = resp.headers.get("content-type")
            etag, last_modified = resp.headers.get("etag"), resp.headers.get("last-modified")
    except httpx.TooManyRedirects as exc:
        msg = (f"{desc} redirected more than {MAX_REDIRECTS} times (a redirect loop?). "
               "Open it in a browser to find the image's real address.")
        raise ImageNotFoundError(msg) from exc
    except httpx.TimeoutException as exc:
        msg = (f"{desc} did not answer within {timeout:g} s ({type(exc).__name__}). "
               "Check the address, or pass a larger url_timeout=.")
        raise ImageNotFoundError(msg) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        why = _scrub(str(exc), url) or type(exc).__name__
        msg = f"Could not fetch {desc}: {why}. Check the address and your network connection."
        raise ImageNotFoundError(msg) from exc
    if not buf:
        msg = f"{desc} answered with an empty body; there is no image to read."
        raise ImageDecodeError(msg)
    return Fetched(bytes(buf), content_type, etag=etag, last_modified=last_modified)


def check_cap(n: int, max_bytes: int, desc: str) -> None:
    """Raise :class:`ImageTooLargeError` when ``n`` bytes are over the ``max_bytes`` cap."""
    if n > max_bytes:
        msg = f"{desc} is {n:,} B, over the {max_bytes:,} B ({max_bytes / 2**20:.0f} MiB) cap on one input. "
        msg += f"Shrink the image, or raise the cap with max_bytes= (e.g. max_bytes={2 * max(n, max_bytes):_})."
        raise ImageTooLargeError(msg)


def _status_message(desc: str, status: int, reason: str) -> str:
    answered = f"{desc} answered HTTP {status} {reason}".rstrip()
    if status in (404, 410):
        return f"{answered}: there is no image there. Check the address."
    if status in (401, 403):
        return (f"{answered}: the server wants credentials or refuses scripts (or a presigned link expired). "
                "Download the image and pass the file instead.")
    if status == 429 or status >= 500:
        return f"{answered}: the image server is busy or failing. Try again later."
    return f"{answered}. Check the address."
