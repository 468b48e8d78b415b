"""The only module that speaks HTTP to the model server.

Chat completions go over a lean keep-alive pool (:mod:`caprl_nb.transport`, its HTTP/1.1
framing only) with bodies built as bytes (see :class:`CapRLClient` for why not through the
openai SDK), or over httpx when a proxy is configured; ``openai.AsyncOpenAI`` asks
``/v1/models`` (its own retries off: ours are narrower); httpx reads vLLM's plain endpoints
(``/version``, ``/health``, ``/metrics``). Every call has finite
connect and read timeouts. Retries cover connection errors, timeouts, 429 and 5xx with capped,
jittered exponential backoff that honours ``Retry-After``; any other 4xx fails at once.
HTTP status, OpenAI and httpx exceptions are translated into :mod:`caprl_nb.errors` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import secrets
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
import openai

from caprl_nb.config import DEFAULT_SERVED_NAME, Settings
from caprl_nb.errors import (
    ModelNotChosenError,
    RequestRejectedError,
    ServerBusyError,
    ServerError,
    ServerTimeoutError,
    ServerUnavailableError,
)
from caprl_nb.transport import ConnectionPool, proxied

__all__ = [
    "CapRLClient", "Completion", "ServerInfo", "StatusError", "Watch", "chat_fields", "fetch_plain",
    "fetch_server_info", "is_healthy", "request_body", "retry_delay",
]

T = TypeVar("T")

# Plain endpoints must answer fast or not at all: a status check never waits on generation.
INFO_TIMEOUT = 10.0


@dataclass(frozen=True)
class ServerInfo:
    """What the server says about itself."""

    base_url: str
    model: str  # the id to send as "model"
    root: str | None  # the checkpoint it loaded (vLLM's /v1/models "root")
    max_model_len: int | None
    version: str | None  # vLLM's /version
    models: tuple[str, ...] = ()
    parent: str | None = None  # the base model of a LoRA adapter (vLLM's /v1/models "parent")

    @property
    def checkpoint(self) -> str:
        """The weights that answer: what results are keyed by, never the served alias alone.

        vLLM reports the path or hub id it loaded as ``root`` (and a LoRA adapter's base model as
        ``parent``). A server that reports neither is identified by its alias *at its URL*,
        marked unverified, so two such servers never share answers.
        """
        if self.root:
            return f"{self.root}+{self.parent}" if self.parent else self.root
        return f"unverified:{self.model}@{self.base_url}"

    @property
    def verified(self) -> bool:
        return bool(self.root)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    attempts: int


def _unavailable(settings: Settings, exc: BaseException | None = None) -> ServerUnavailableError:
    cause = f" ({exc})" if exc is not None and str(exc) else ""
    return ServerUnavailableError(
        f"No CapRL server answered at {settings.base_url}{cause}. Start one with "
        "`caprl-nb serve` or set CAPRL_BASE_URL (or pass base_url=) to a running vLLM server."
    )


def retry_delay(attempt: int, retry_after: float | None, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    ``Retry-After`` wins when the server sent one (capped); otherwise exponential backoff from
    0.5 s with "equal jitter" (half fixed, half random) so retries from many rows spread out.
    """
    if retry_after is not None and retry_after >= 0:
        return min(cap, retry_after)
    base = min(cap, 0.5 * 2 ** (attempt - 1))
    return float(base / 2 + random.uniform(0, base / 2))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        # An HTTP date: honour it relative to now.
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class StatusError(Exception):
    """A chat completion answered with HTTP 4xx/5xx (internal: ``complete`` translates it)."""

    def __init__(self, status_code: int, body: object, headers: Mapping[str, str]) -> None:
        self.status_code = status_code
        self.body = body  # the parsed JSON, or the text when it was not JSON
        self.headers = headers  # names lower-cased
        super().__init__(f"HTTP {status_code}: {_server_message(body, status_code)}")


# How much of a body that is not JSON an error message quotes.
_QUOTE = 300


class Watch(Protocol):
    """What the client asks when a request could not reach the server (see caprl_nb.health)."""

    async def ready(self) -> None: ...

    async def lost(self, error: BaseException) -> bool: ...


# Statuses a proxy answers for a server behind it that is gone: worth asking whether it is down.
_GATEWAY = (502, 503, 504)


def _server_message(body: object, status: int) -> str:
    """The server's own words in an error body (vLLM, OpenAI and proxy shapes)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str) and inner:
            return inner
        if body.get("message"):
            return str(body["message"])
        return json.dumps(body)[:_QUOTE]
    text = str(body or "").strip()
    return text[:_QUOTE] if text else f"no message (HTTP {status})"


def _openai_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and (body.get("message") or isinstance(body.get("error"), dict)):
        return _server_message(body, exc.status_code)
    return exc.message


# -- TLS contexts -----------------------------------------------------------------------------
# httpx builds an SSL context for every client it makes, verifying or not (loading the CA
# bundle: tens of milliseconds each); a batch makes one client per lane of connections.
def _tls(url: str) -> ssl.SSLContext:
    """The SSL context for httpx clients that only ever ask ``url``'s server, redirects off.

    https: one verifying context per process (httpx's own, built on first use; rebuilt if
    SSL_CERT_FILE or SSL_CERT_DIR change). http: such a client never makes a TLS connection,
    so it gets a context without CA certificates, which would refuse any server if it did;
    unless a proxy is configured (it may be an https:// one), when it verifies as well.
    """
    return _verifying() if _speaks_tls(url) else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _speaks_tls(url: str) -> bool:
    return url[:6].lower() == "https:" or bool(urllib.request.getproxies())


def _verifying() -> ssl.SSLContext:
    return _verifying_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _verifying_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's default context (it reads SSL_CERT_FILE / SSL_CERT_DIR itself: these are the key)."""
    return httpx.create_ssl_context()


class _TLSOnDemand(httpx.AsyncBaseTransport):
    """https for a client of an http:// server: built (verifying) if a redirect ever leads there."""

    def __init__(self) -> None:
        self._transport: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._transport is None:
            self._transport = httpx.AsyncHTTPTransport(verify=_verifying())
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


def _discovery_client(url: str, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """The client that asks ``/v1/models`` (through openai) and ``/version`` at ``url``: one per
    caller, following redirects as openai's own client does, so its https connections verify
    certificates whatever ``url``'s scheme (for an http:// one, only once a redirect leads there)."""
    if _speaks_tls(url):
        return httpx.AsyncClient(timeout=timeout, follow_redirects=True, verify=_verifying())
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=True, verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
        mounts={"https://": _TLSOnDemand()},
    )


def _models_client(settings: Settings, timeout: openai.Timeout, http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    """openai's client for ``/v1/models`` (its own retries off), running on ``http``."""
    return openai.AsyncOpenAI(
        base_url=settings.base_url,
        api_key=settings.api_key,
        max_retries=0,
        timeout=timeout,
        # openai takes an httpx client as well as an httpx2 one (openai._httpx2 translates its
        # timeouts and errors), though its annotation names only httpx2.
        http_client=http,  # type: ignore[arg-type]
    )


# -- request bodies ---------------------------------------------------------------------------
# Image URLs are spliced into the JSON body as bytes instead of being JSON-encoded: a base64
# data URL is half a megabyte of characters that need no escaping, and scanning it through
# json.dumps costs more CPU than everything else in a request. The marker stands in for it
# while the (small) rest is encoded.
_MARKER = f"caprl-image-{secrets.token_hex(8)}-"


def _spliceable(url: object) -> bool:
    """A long ASCII string that JSON would copy as is (no quote, backslash or line break)."""
    return (
        isinstance(url, str) and len(url) > 1024 and url.isascii()
        and not any(c in url for c in '"\\\n\r\t')
    )


def request_body(fields: dict[str, Any]) -> bytes:
    """``fields`` as compact JSON bytes; long image URLs in ``fields["messages"]`` are spliced in."""
    urls: list[str] = []

    def part(p: Any) -> Any:
        image = p.get("image_url") if isinstance(p, dict) and p.get("type") == "image_url" else None
        if not isinstance(image, dict) or not _spliceable(image.get("url")):
            return p
        urls.append(image["url"])
        return {**p, "image_url": {**image, "url": f"{_MARKER}{len(urls) - 1}."}}

    def message(m: Any) -> Any:
        content = m.get("content") if isinstance(m, dict) else None
        return {**m, "content": [part(p) for p in content]} if isinstance(content, list) else m

    messages = [message(m) for m in fields.get("messages", ())]
    encoded = json.dumps({**fields, "messages": messages}, separators=(",", ":")).encode()
    if not urls:
        return encoded
    pieces: list[bytes] = []
    rest = encoded
    for i, url in enumerate(urls):
        before, _, rest = rest.partition(f"{_MARKER}{i}.".encode())
        pieces += (before, url.encode("ascii"))
    pieces.append(rest)
    return b"".join(pieces)


def chat_fields(
    *,
    model: str,
    messages: list[dict[str, Any]],
    temperature: float,
    top_p: float,
    max_tokens: int,
    repetition_penalty: float,
    seed: int | None = None,
    structured: dict[str, Any] | None = None,
    processor_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON fields of one chat completion request, as :meth:`CapRLClient.complete` sends them
    (and :func:`caprl_nb.chat.chat_request` shows them)."""
    extra: dict[str, Any] = {"repetition_penalty": repetition_penalty}
    if seed is not None:
        extra["seed"] = seed
    if processor_kwargs:
        extra["mm_processor_kwargs"] = processor_kwargs
    kwargs: dict[str, Any] = {}
    for key, value in (structured or {}).items():
        if key == "response_format":
            kwargs[key] = value
        else:
            extra[key] = value
    return {
        "model": model, "messages": messages, "temperature": temperature, "top_p": top_p,
        "max_tokens": max_tokens, **kwargs, **extra,
    }


class CapRLClient:
    """One async connection pool to one server; use as an async context manager.

    Chat completions do not go through ``openai.AsyncOpenAI``: the SDK
    JSON-encodes each half-megabyte base64 image and builds pydantic models around every
    request and response, which cost more client CPU than the rest of a row (and httpx's pool
    costs as much again at a few hundred connections: see :mod:`caprl_nb.transport`). The body
    here is built once as bytes (:func:`request_body`) and the answer read with ``json.loads``; the
    protocol is the same OpenAI-compatible one, and errors are translated as the SDK's were.
    ``openai`` still asks ``/v1/models`` (:func:`fetch_server_info`).
    """

    def __init__(self, settings: Settings, watch: Watch | None = None) -> None:
        if len(settings.base_urls) > 1:  # one client is one server (caprl_nb.fleet has several)
            settings = settings.for_server(settings.base_urls[0])
        self.settings = settings
        # Server health shared by a whole batch: a request that cannot reach the server waits
        # for it (or for the batch's verdict that it is gone) instead of spending its retries.
        self.watch = watch
        timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
        headers = {"Authorization": f"Bearer {settings.api_key}", "Content-Type": "application/json"}
        size = max(1, settings.concurrency)
        # Plain endpoints (/metrics), and chat completions too when a proxy is configured.
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self._http = httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers, verify=_tls(settings.base_url))
        # Chat completions: a lean keep-alive pool (see caprl_nb.transport for why not httpx).
        self._pool: ConnectionPool | None = None
        if not proxied(settings.base_url):
            self._pool = ConnectionPool(
                settings.base_url, headers=headers,
                connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
            )
        self._completions_url = f"{settings.base_url.rstrip('/')}/chat/completions"
        # /v1/models (through openai) and /version share one client (openai closes it).
        self._discovery = _discovery_client(settings.base_url, timeout)
        self._openai = _models_client(
            settings, openai.Timeout(settings.read_timeout, connect=settings.connect_timeout), self._discovery
        )

    async def __aenter__(self) -> CapRLClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        await self._http.aclose()
        await self._openai.close()

    # -- retry loop -----------------------------------------------------------------------
    async def _with_retries(
        self,
        call: Callable[[], Awaitable[T]],
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> tuple[T, int]:
        s = self.settings
        attempt = 0
        watch = self.watch
        while True:
            attempt += 1
            if watch is not None:
                await watch.ready()  # raises once the batch has given the server up
            try:
                return await call(), attempt
            except StatusError as exc:
                status = exc.status_code
                if status != 429 and status < 500:
                    raise self._rejected(exc) from exc
                if status in _GATEWAY and watch is not None and await watch.lost(exc):
                    attempt -= 1  # the server was down and is back: not this request's fault
                    continue
                retry_after = _retry_after(exc.headers)
                if attempt > s.max_retries:
                    msg = (
                        f"The server at {s.base_url} answered HTTP {status} "
                        f"({_server_message(exc.body, status)}) {attempt} times. It is overloaded "
                        "or failing: lower concurrency=, check the server's log, and run again "
                        "(finished rows are kept)."
                    )
                    raise ServerBusyError(msg, status) from exc
                delay = retry_delay(attempt, retry_after, s.max_backoff)
                error: BaseException = exc
            except httpx.TimeoutException as exc:
                if attempt > s.max_retries:
                    msg = (
                        f"The server at {s.base_url} did not answer within {s.read_timeout:g} s, "
                        f"{attempt} times. Raise read_timeout=, or lower concurrency= or max_tokens=."
                    )
                    raise ServerTimeoutError(msg) from exc
                delay = retry_delay(attempt, None, s.max_backoff)
                error = exc
            except httpx.TransportError as exc:
                if watch is not None and await watch.lost(exc):
                    attempt -= 1
                    continue
                if attempt > s.max_retries:
                    raise _unavailable(s, exc) from exc
                delay = retry_delay(attempt, None, s.max_backoff)
                error = exc
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await asyncio.sleep(delay)

    def _rejected(self, exc: StatusError) -> ServerError:
        status = exc.status_code
        detail = _server_message(exc.body, status)
        hints = {
            400: "The server refused the request as sent",
            401: "The server wants an API key: set CAPRL_API_KEY or pass api_key=",
            403: "The server refused the API key: check CAPRL_API_KEY",
            404: "The server does not serve that model or path: check model= and base_url=",
            413: "The request is too large for the server: lower the image size limits",
        }
        hint = hints.get(status, "The server refused the request")
        if "mm_processor_kwargs" in detail:
            hint = (
                "The server refuses per-request image-processor settings, which caprl_nb sends "
                "to fit an InternVL image into max_model_len with fewer tiles. Restart vLLM with "
                "--trust-request-mm-kwargs (caprl-nb serve adds it for InternVL), or with a larger "
                "--max-model-len, or pass a smaller max_tokens="
            )
        return RequestRejectedError(f"{hint} (HTTP {status}: {detail}).", status)

    # -- calls ----------------------------------------------------------------------------
    async def complete(
        self, *, on_retry: Callable[[int, BaseException, float], None] | None = None, **request: Any
    ) -> Completion:
        """One chat completion with retries; raises a ServerError subclass when it gives up.

        ``request`` is :func:`chat_fields`'s keyword arguments (``model``, ``messages``,
        sampling; ``structured`` holds the fields that constrain the answer, see
        Task.structured_request; ``processor_kwargs`` go to vLLM's multimodal processor for this
        request only, ``mm_processor_kwargs``, e.g. InternVL's ``max_dynamic_patch``).
        """
        fields = chat_fields(**request)
        body = request_body(fields)
        del fields
        started = time.perf_counter()

        async def call() -> Any:
            return await self._post(body)

        response, attempts = await self._with_retries(call, on_retry)
        latency = time.perf_counter() - started
        return self._completion(response, latency, attempts)

    async def _post(self, body: bytes) -> Any:
        """POST one chat completion; its JSON answer, or StatusError for 4xx/5xx."""
        if self._pool is not None:
            status, headers, raw = await self._pool.post("/chat/completions", body)
        else:
            response = await self._http.post(self._completions_url, content=body)
            status, headers, raw = response.status_code, dict(response.headers), response.content
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        if status >= 400:
            raise StatusError(status, parsed, headers)
        return parsed

    def _completion(self, response: Any, latency: float, attempts: int) -> Completion:
        choices = response.get("choices") if isinstance(response, dict) else None
        if not choices or not isinstance(choices[0], dict):
            msg = f"The server at {self.settings.base_url} returned no choices; check its log."
            raise ServerBusyError(msg)
        choice = choices[0]
        message = choice.get("message") or {}
        usage = response.get("usage") or {}
        return Completion(
            text=message.get("content") or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_s=latency,
            attempts=attempts,
        )

    async def metrics(self) -> str | None:
        """The server's Prometheus ``/metrics`` text (vLLM's), or None when it has none."""
        limit = min(self.settings.read_timeout, INFO_TIMEOUT)
        try:
            response = await self._http.get(f"{self.settings.server_root}/metrics", timeout=limit)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None

    async def server_info(self, model: str | None = None) -> ServerInfo:
        """Ask ``/v1/models`` and ``/version``; pick ``model`` or the single model listed."""
        return await fetch_server_info(self.settings, model, self._openai, self._discovery)

    async def discover(
        self, model: str | None, wait_s: float, on_wait: Callable[[str], None]
    ) -> ServerInfo:
        """The server's account of itself (:meth:`server_info`), waited for up to ``wait_s``
        seconds while nothing answers; ``on_wait`` hears every 15 s what is being waited for."""
        base_url = self.settings.base_url
        deadline = time.monotonic() + wait_s
        next_word = 0.0
        while True:
            try:
                return await self.server_info(model)
            except ServerUnavailableError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    if wait_s:
                        msg = f"{exc} Waited {wait_s:g} s (wait_for_server=)."
                    else:
                        msg = (
                            f"{exc} If it is still starting, pass wait_for_server=600 (or set "
                            "CAPRL_WAIT_FOR_SERVER) to wait for it."
                        )
                    raise ServerUnavailableError(msg) from exc
                if time.monotonic() >= next_word:
                    on_wait(
                        f"waiting up to {left:.0f} s more for the server at {base_url} "
                        "to answer (wait_for_server=)"
                    )
                    next_word = time.monotonic() + 15
                await asyncio.sleep(min(1.0, left))


async def fetch_server_info(
    settings: Settings, model: str | None = None, client: openai.AsyncOpenAI | None = None,
    http: httpx.AsyncClient | None = None,
) -> ServerInfo:
    """What the server at ``settings.base_url`` serves; ServerUnavailableError when nothing answers.

    ``client`` asks ``/v1/models``, ``http`` asks ``/version`` (the client ``client`` runs on,
    when given); without ``client`` both are made here, as one, and closed on return. Of
    several servers, the first is asked.
    """
    if len(settings.base_urls) > 1:
        settings = settings.for_server(settings.base_urls[0])
    own = client is None
    timeout = min(settings.read_timeout, INFO_TIMEOUT)
    if client is None:
        connect = min(settings.connect_timeout, timeout)
        http = _discovery_client(settings.base_url, httpx.Timeout(timeout, connect=connect))
        client = _models_client(settings, openai.Timeout(timeout, connect=connect), http)
    try:
        try:
            listing = await client.models.list(timeout=timeout)
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                given = "no API key was sent" if settings.api_key in ("", "EMPTY") else "it refused the API key"
                msg = (
                    f"The server at {settings.base_url} answered HTTP {exc.status_code} to /v1/models: "
                    f"{given}. Set CAPRL_API_KEY (or pass api_key=, or caprl_nb.configure(api_key=...)) "
                    "to the key the server was started with (vllm serve --api-key)."
                )
                raise RequestRejectedError(msg, exc.status_code) from exc
            msg = (
                f"The server at {settings.base_url} answered HTTP {exc.status_code} to /v1/models "
                f"({_openai_message(exc)}). Is base_url the OpenAI-compatible root (ending in /v1)?"
            )
            raise ServerUnavailableError(msg) from exc
        except openai.APIConnectionError as exc:
            raise _unavailable(settings, exc.__cause__ or exc) from exc
        entries = list(listing.data)
        ids = tuple(m.id for m in entries)
        chosen = model
        if chosen is None:
            if len(ids) > 1 and DEFAULT_SERVED_NAME not in ids:
                msg = (
                    f"The server at {settings.base_url} serves several models "
                    f"({', '.join(map(repr, ids))}) and none is called {DEFAULT_SERVED_NAME!r}, so "
                    "caprl_nb cannot tell which to ask. Choose one with model=... (or "
                    "caprl_nb.configure(model=...), or set CAPRL_MODEL)."
                )
                raise ModelNotChosenError(msg, ids)
            chosen = ids[0] if len(ids) == 1 else DEFAULT_SERVED_NAME
        entry = next((m for m in entries if m.id == chosen), None)
        if entry is None and model is not None and ids:
            msg = (
                f"The server at {settings.base_url} does not serve model {model!r}; it serves "
                f"{', '.join(map(repr, ids))}. Pass one of those as model= or unset CAPRL_MODEL."
            )
            raise RequestRejectedError(msg, 404)
        extra = (entry.model_extra or {}) if entry is not None else {}
        root = extra.get("root")
        parent = extra.get("parent")
        max_len = extra.get("max_model_len")
        version = await _server_version(settings, http)
        return ServerInfo(
            base_url=settings.base_url,
            model=chosen,
            root=str(root) if root else None,
            max_model_len=int(max_len) if isinstance(max_len, (int, float)) else None,
            version=version,
            models=ids,
            parent=str(parent) if parent else None,
        )
    finally:
        if own:
            await client.close()


async def _server_version(settings: Settings, http: httpx.AsyncClient | None = None) -> str | None:
    """vLLM's ``GET /version``; None for servers that do not have it."""
    text = await fetch_plain(settings, "/version", http)
    try:
        version = json.loads(text).get("version") if text else None
    except (ValueError, AttributeError):
        return None
    return str(version) if version else None


async def fetch_plain(settings: Settings, path: str, http: httpx.AsyncClient | None = None) -> str | None:
    """The body of ``GET <server root><path>`` (``/version``, ``/metrics``); None on any failure.

    Asked through ``http`` when given (it stays open), else through a client of its own.
    """
    limit = min(settings.read_timeout, INFO_TIMEOUT)
    timeout = httpx.Timeout(limit, connect=min(settings.connect_timeout, limit))
    headers = {"Authorization": f"Bearer {settings.api_key}"}
    url = f"{settings.server_root}{path}"
    try:
        if http is not None:
            response = await http.get(url, headers=headers, timeout=timeout, follow_redirects=False)
        else:
            async with httpx.AsyncClient(timeout=timeout, headers=headers, verify=_tls(url)) as own:
                response = await own.get(url)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def is_healthy(root_url: str, timeout: float = 2.0) -> bool:
    """Whether vLLM's ``GET <root_url>/health`` answers 200 within ``timeout`` seconds; blocking
    (``caprl-nb serve`` polls it while the engine starts)."""
    try:
        response = httpx.get(f"{root_url.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
