"""The only module that speaks HTTP to the model server.

``openai.AsyncOpenAI`` does the chat completions (its own retries off: ours are narrower);
httpx reads vLLM's plain endpoints (``/version``, ``/health``). Every call has finite
connect and read timeouts. Retries cover connection errors, timeouts, 429 and 5xx with capped,
jittered exponential backoff that honours ``Retry-After``; any other 4xx fails at once.
OpenAI/httpx exceptions are translated into :mod:`caprl_nb.errors` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
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

__all__ = [
    "CapRLClient", "Completion", "ServerInfo", "Watch", "fetch_plain", "fetch_server_info", "is_healthy",
    "retry_delay",
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


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
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


class Watch(Protocol):
    """What the client asks when a request could not reach the server (see caprl_nb.health)."""

    async def ready(self) -> None: ...

    async def lost(self, error: BaseException) -> bool: ...


# Statuses a proxy answers for a server behind it that is gone: worth asking whether it is down.
_GATEWAY = (502, 503, 504)


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return exc.message


class CapRLClient:
    """One async connection pool to one server; use as an async context manager."""

    def __init__(self, settings: Settings, watch: Watch | None = None) -> None:
        self.settings = settings
        # Server health shared by a whole batch: a request that cannot reach the server waits
        # for it (or for the batch's verdict that it is gone) instead of spending its retries.
        self.watch = watch
        self._openai = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key,
            max_retries=0,
            timeout=openai.Timeout(settings.read_timeout, connect=settings.connect_timeout),
        )

    async def __aenter__(self) -> CapRLClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
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
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status != 429 and status < 500:
                    raise self._rejected(exc) from exc
                if status in _GATEWAY and watch is not None and await watch.lost(exc):
                    attempt -= 1  # the server was down and is back: not this request's fault
                    continue
                retry_after = _retry_after(exc)
                if attempt > s.max_retries:
                    msg = (
                        f"The server at {s.base_url} answered HTTP {status} "
                        f"({_server_message(exc)}) {attempt} times. It is overloaded or failing: "
                        "lower concurrency=, check the server's log, and run again (finished "
                        "rows are kept)."
                    )
                    raise ServerBusyError(msg, status) from exc
                delay = retry_delay(attempt, retry_after, s.max_backoff)
                error: BaseException = exc
            except openai.APITimeoutError as exc:
                if attempt > s.max_retries:
                    msg = (
                        f"The server at {s.base_url} did not answer within {s.read_timeout:g} s, "
                        f"{attempt} times. Raise read_timeout=, or lower concurrency= or max_tokens=."
                    )
                    raise ServerTimeoutError(msg) from exc
                delay = retry_delay(attempt, None, s.max_backoff)
                error = exc
            except openai.APIConnectionError as exc:
                if watch is not None and await watch.lost(exc):
                    attempt -= 1
                    continue
                if attempt > s.max_retries:
                    raise _unavailable(s, exc.__cause__ or exc) from exc
                delay = retry_delay(attempt, None, s.max_backoff)
                error = exc
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await asyncio.sleep(delay)

    def _rejected(self, exc: openai.APIStatusError) -> ServerError:
        status = exc.status_code
        detail = _server_message(exc)
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
        self,
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
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> Completion:
        """One chat completion with retries; raises a ServerError subclass when it gives up.

        ``structured`` holds the fields that constrain the answer (see Task.structured_request);
        ``processor_kwargs`` go to vLLM's multimodal processor for this request only
        (``mm_processor_kwargs``, e.g. InternVL's ``max_dynamic_patch``).
        """
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
        started = time.perf_counter()

        async def call() -> Any:
            return await self._openai.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]  # plain dicts are what the API takes
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                extra_body=extra,
                **kwargs,
            )

        response, attempts = await self._with_retries(call, on_retry)
        latency = time.perf_counter() - started
        if not response.choices:
            msg = f"The server at {self.settings.base_url} returned no choices; check its log."
            raise ServerBusyError(msg)
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_s=latency,
            attempts=attempts,
        )

    async def server_info(self, model: str | None = None) -> ServerInfo:
        """Ask ``/v1/models`` and ``/version``; pick ``model`` or the single model listed."""
        return await fetch_server_info(self.settings, model, self._openai)

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
    settings: Settings, model: str | None = None, client: openai.AsyncOpenAI | None = None
) -> ServerInfo:
    """What the server at ``settings.base_url`` serves; ServerUnavailableError when nothing answers."""
    own = client is None
    timeout = min(settings.read_timeout, INFO_TIMEOUT)
    if client is None:
        client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key,
            max_retries=0,
            timeout=openai.Timeout(timeout, connect=min(settings.connect_timeout, timeout)),
        )
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
                f"({_server_message(exc)}). Is base_url the OpenAI-compatible root (ending in /v1)?"
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
        version = await _server_version(settings)
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


async def _server_version(settings: Settings) -> str | None:
    """vLLM's ``GET /version``; None for servers that do not have it."""
    text = await fetch_plain(settings, "/version")
    try:
        version = json.loads(text).get("version") if text else None
    except (ValueError, AttributeError):
        return None
    return str(version) if version else None


async def fetch_plain(settings: Settings, path: str) -> str | None:
    """The body of ``GET <server root><path>`` (``/version``, ``/metrics``); None on any failure."""
    limit = min(settings.read_timeout, INFO_TIMEOUT)
    timeout = httpx.Timeout(limit, connect=min(settings.connect_timeout, limit))
    headers = {"Authorization": f"Bearer {settings.api_key}"}
    try:
        async with httpx.AsyncClient(timeout=timeout, headers=headers) as http:
            response = await http.get(f"{settings.server_root}{path}")
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
