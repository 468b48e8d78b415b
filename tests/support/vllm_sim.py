"""A vLLM-shaped HTTP simulator for fault and throughput tests.

This is NOT a model and must never be presented as one. It speaks the HTTP surface of
``vllm serve`` (0.32) closely enough for caprl_nb's client, batch and server layers to be
tested against real sockets: scripted faults (5xx, 429 with Retry-After, connection resets,
requests that never answer), a dead server, a capacity-limited "batching" server with a fixed
latency, and vLLM's request validation at the protocol level. Its "captions" are
deterministic tags derived from hashes of the request's image bytes and prompt text::

    sim caption <image12> <request12> sim caption <image12> <request12> ...

where ``<image12>`` is ``image_digest(url)[:12]`` of the first image (``noimage00000``
when there is none) and ``<request12>`` hashes every image and every text part, so a test
can tell which image (and which prompt) a caption belongs to.

Usage::

    with VLLMSimulator(faults=[Fault("status", 503, retry_after=1)]) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="x")
        ...
        assert [r["_outcome"] for r in sim.requests] == ["status:503", "ok"]

Design: one asyncio event loop on a daemon thread, raw HTTP/1.1 over asyncio streams
(keep-alive, Content-Length on every response). Every connection is a coroutine, so
hundreds of concurrent keep-alive connections cost no threads. stdlib only, apart from
Pillow to read image sizes (as vLLM does).

Where vLLM 0.32 and older vLLMs differ, the simulator follows 0.32:

* an unknown ``model`` is ``404 NotFoundError`` ("The model `x` does not exist."); a missing
  ``model`` means the served one;
* ``max_tokens`` larger than the room left after the prompt is silently clamped; only a
  prompt that alone exceeds ``max_model_len``, or ``max_tokens > max_model_len``, is a 400.
  ``context_check="reject"`` restores the older rule (prompt + max_tokens > max_model_len
  is a 400 "This model's maximum context length is N tokens. However, you requested ...").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import io
import itertools
import json
import math
import random
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Callable, Iterable, NamedTuple

import pybase64
from PIL import Image, UnidentifiedImageError

__all__ = ["Fault", "VLLMSimulator", "expected_content", "image_digest"]

FAULT_KINDS = ("status", "timeout", "reset", "ok")
IMAGE_PATCH_PX = 28  # one simulated image token per 28x28 px tile, as Qwen2.5-VL merges patches
MAX_BODY_BYTES = 64 * 1024 * 1024
_HEADER_LIMIT = 64 * 1024
_ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    429: "RateLimitError",
    500: "InternalServerError",
    501: "NotImplementedError",
    503: "ServiceUnavailableError",
}


@dataclass
class Fault:
    """One scripted response for a chat-completion request.

    kind:
        ``"status"``  answer ``status`` with vLLM's error JSON (or ``body``) at once;
        ``"timeout"`` read the request and never answer: hold the connection until the
                      client hangs up, ``hold`` seconds pass (then close it without a
                      response), or the simulator stops;
        ``"reset"``   read the request, then close the socket with SO_LINGER 0 (a TCP RST);
        ``"ok"``      answer normally (a placeholder in a script of faults).
    retry_after: adds ``Retry-After`` (seconds; whole numbers are written as integers).
    """

    kind: str
    status: int = 500
    retry_after: float | None = None
    body: str | None = None
    hold: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            msg = f"Fault kind must be one of {FAULT_KINDS}, not {self.kind!r}."
            raise ValueError(msg)


def image_digest(data_url: str) -> str:
    """sha256 hex of the image bytes in a base64 data URL (of the URL text for an http URL)."""
    if data_url[:5].lower() != "data:":
        return hashlib.sha256(data_url.encode()).hexdigest()
    _spec, _sep, payload = data_url[5:].partition(",")
    return hashlib.sha256(base64.b64decode(payload)).hexdigest()


def expected_content(body: dict[str, Any], words: int = 16) -> str:
    """The caption the simulator writes for a request ``body``, ``words`` words long."""
    digests = [image_digest(url) for url in _image_urls(body.get("messages") or [])]
    return _caption(digests, _prompt_text(body.get("messages") or []), words)


def _caption(digests: list[str], prompt: str, words: int) -> str:
    image12 = digests[0][:12] if digests else "noimage00000"
    key = hashlib.sha256(json.dumps([digests, prompt]).encode()).hexdigest()[:12]
    return " ".join(itertools.islice(itertools.cycle(["sim", "caption", image12, key]), words))


def _image_urls(messages: list[Any]) -> list[str]:
    urls = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image_url":
                image_url = part.get("image_url")
                if isinstance(image_url, dict) and isinstance(image_url.get("url"), str):
                    urls.append(image_url["url"])
    return urls


def _prompt_text(messages: list[Any]) -> str:
    texts = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
    return "\n".join(texts)


def _error_json(status: int, message: str, param: str | None = None, err_type: str | None = None) -> dict:
    err_type = err_type or _ERROR_TYPES.get(status, HTTPStatus(status).phrase)
    return {"error": {"message": message, "type": err_type, "param": param, "code": status}}


class _Reject(Exception):
    """A request vLLM would refuse: carries the status and the error JSON."""

    def __init__(self, status: int, message: str, param: str | None = None, err_type: str | None = None):
        super().__init__(message)
        self.status = status
        self.payload = _error_json(status, message, param, err_type)


class _Request(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class _Image(NamedTuple):
    digest: str
    tokens: int


class VLLMSimulator:
    """A vLLM-shaped server on 127.0.0.1 for fault and throughput tests (not a model).

    latency:  seconds each successful completion takes.
    capacity: at most this many completions are processed at once; the rest queue
              (``vllm:num_requests_waiting``), as in a batching server. None: unlimited.
    faults:   scripted :class:`Fault` s, consumed in order, one per chat-completion request.
    fault_rate: probability that a request not otherwise scripted gets a random fault
              (500, 503/429 with ``Retry-After: 0``, reset, or a timeout held until the
              client hangs up), drawn from ``random.Random(seed)``.
    completion_tokens: words in a full caption; a smaller ``max_tokens`` truncates it
              with ``finish_reason="length"``.
    context_check: ``"clamp"`` (vLLM 0.32) or ``"reject"`` (older vLLMs); see the module doc.
    port:     the port to listen on (0: a free one); pass a stopped simulator's port to
              restart "the same server" at the same URL.
    served_names: every name the model is served under (``vllm serve --served-model-name a b``):
              ``/v1/models`` lists one card per name and completions accept any of them.
              Default: ``(model_id,)``.
    api_key:  as ``vllm serve --api-key``: every ``/v1/`` request without
              ``Authorization: Bearer <api_key>`` is answered 401 ``{"error": "Unauthorized"}``.
    respond:  ``respond(body) -> text | None``: the answer to a request body (a scripted
              "model" for tests whose answers must be known); None: the hash caption.

    Observations, readable from any thread:
    requests: every chat-completion request body received (parsed JSON; ``{"_raw": ...}``
              when it was not JSON), in arrival order, with ``_outcome`` ("ok", "status:429",
              "timeout", "reset"), ``_time`` (``time.monotonic()`` at arrival) and
              ``_images`` (``image_digest`` of each decodable image).
    max_in_flight: most chat-completion requests received and not yet answered at once
              (queued ones included: this measures the client's concurrency).
    max_running: most completions being processed at once (never above ``capacity``).
    in_flight: chat-completion requests received and not yet answered, now.
    """

    def __init__(
        self,
        *,
        model_id: str = "caprl",
        root: str = "internlm/CapRL-3B",
        max_model_len: int = 32768,
        version: str | None = "0.32.0",  # None: /version says null (a server that is not vLLM)
        latency: float = 0.0,
        capacity: int | None = None,
        faults: Iterable[Fault] = (),
        fault_rate: float = 0.0,
        seed: int = 0,
        completion_tokens: int = 16,
        context_check: str = "clamp",
        keep_bodies: bool = True,
        port: int = 0,
        served_names: Iterable[str] = (),
        api_key: str | None = None,
        respond: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            msg = f"fault_rate must be within [0, 1], not {fault_rate}."
            raise ValueError(msg)
        if capacity is not None and capacity < 1:
            msg = f"capacity must be at least 1 (or None for unlimited), not {capacity}."
            raise ValueError(msg)
        if context_check not in ("clamp", "reject"):
            msg = f'context_check must be "clamp" or "reject", not {context_check!r}.'
            raise ValueError(msg)
        self.model_id = model_id
        self.served_names = tuple(served_names) or (model_id,)
        self.api_key = api_key
        self.respond = respond
        self.root = root
        self.max_model_len = max_model_len
        self.version = version
        self.latency = latency
        self.capacity = capacity
        self.fault_rate = fault_rate
        self.completion_tokens = completion_tokens
        self.context_check = context_check
        self.keep_bodies = keep_bodies  # False: log outcomes and image digests only (long benchmarks)
        self.port = port  # 0: a free port; a port a stopped simulator had: "the same server restarted"
        self.base_url = ""
        self.requests: list[dict[str, Any]] = []
        self.max_in_flight = 0
        self.max_running = 0
        self.in_flight = 0
        self._running = 0
        self._waiting = 0
        self._prompt_tokens_total = 0
        self._generation_tokens_total = 0
        self._created = int(time.time())
        self._lock = threading.Lock()
        self._faults: collections.deque[Fault] = collections.deque(faults)
        self._image_rules: list[tuple[Callable[[str], bool], Fault]] = []
        self._rng = random.Random(seed)
        self._down = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task] = set()
        self._start_error: BaseException | None = None

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> VLLMSimulator:
        """Bind 127.0.0.1 on a free port; return once it accepts connections."""
        if self._thread is not None:
            msg = "This VLLMSimulator is already started; make a new one per test."
            raise RuntimeError(msg)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="vllm-sim", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=10) or self._start_error is not None:
            msg = "vllm_sim did not start listening within 10 s."
            raise RuntimeError(msg) from self._start_error
        port = int(self.base_url.rsplit(":", 1)[1].split("/", 1)[0])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        """Abort every connection (held timeouts included) and release the port."""
        loop, thread, stopping = self._loop, self._thread, self._stopping
        if loop is None or thread is None or stopping is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)

    def __enter__(self) -> VLLMSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- scripting -------------------------------------------------------------------

    def add_faults(self, *faults: Fault) -> None:
        """Queue scripted faults after those already queued."""
        with self._lock:
            self._faults.extend(faults)

    def fail_image(self, sha256_prefix_or_predicate: str | Callable[[str], bool], fault: Fault) -> None:
        """Answer ``fault`` to every request with an image whose digest matches, forever.

        Matching requests do not consume the scripted queue; ``image_digest`` gives digests.
        """
        if isinstance(sha256_prefix_or_predicate, str):
            prefix = sha256_prefix_or_predicate.lower()

            def matches(digest: str) -> bool:
                return digest.startswith(prefix)

        else:
            matches = sha256_prefix_or_predicate
        with self._lock:
            self._image_rules.append((matches, fault))

    def set_down(self, down: bool) -> None:
        """While down, reset new connections and any request on a kept-alive one."""
        self._down = down

    def reset_log(self) -> None:
        """Forget logged requests and the in-flight high-water marks."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight
            self.max_running = self._running

    # ---- event loop ------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # reported by start() if it happens before ready
            self._start_error = exc
            ready.set()
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(self.capacity) if self.capacity else None
        server = await asyncio.start_server(
            self._connection, "127.0.0.1", self.port, backlog=1024, limit=_HEADER_LIMIT,
            reuse_address=True,
        )
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()
        # A connection accepted as the server closed may have started after the tasks above were
        # taken: end every task still on the loop, so none is left to be collected after it closes.
        current = asyncio.current_task()
        while others := [t for t in asyncio.all_tasks() if t is not current]:
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while not self._down:
                request = await self._read_request(reader, writer)
                if request is None:
                    return
                if self._down:
                    break
                if not await self._dispatch(request, reader, writer):
                    return
            _reset(writer)
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, asyncio.CancelledError):
            # a peer that hung up, a malformed request, or stop(): drop the connection
            _reset(writer)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise
            return None
        except asyncio.LimitOverrunError:
            await _send(writer, 431, b"", keep_alive=False)
            return None
        request_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        try:
            method, target, http_version = request_line.split(" ", 2)
        except ValueError:
            await _send(writer, 400, b"", keep_alive=False)
            return None
        headers = {}
        for line in header_lines:
            name, _sep, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        else:
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                await _send(writer, 413, b"", keep_alive=False)
                return None
            body = await reader.readexactly(length)
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (http_version == "HTTP/1.1" or "keep-alive" in connection)
        return _Request(method.upper(), target.split("?", 1)[0], headers, body, keep_alive)

    async def _dispatch(self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return whether the connection stays open."""
        routes = {
            "/health": ("GET", self._health),
            "/version": ("GET", self._version),
            "/v1/models": ("GET", self._models),
            "/metrics": ("GET", self._metrics),
        }
        keep = request.keep_alive
        if self.api_key is not None and request.path.startswith("/v1/"):
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                await _send_json(writer, 401, {"error": "Unauthorized"}, keep)
                return keep
        if request.path == "/v1/chat/completions":
            if request.method == "POST":
                return await self._chat(request, reader, writer)
            await _send_json(writer, 405, {"detail": "Method Not Allowed"}, keep)
        elif request.path in routes:
            method, handler = routes[request.path]
            if request.method != method:
                await _send_json(writer, 405, {"detail": "Method Not Allowed"}, keep)
            else:
                status, body, content_type = handler()
                await _send(writer, status, body, keep, content_type)
        else:
            await _send_json(writer, 404, {"detail": "Not Found"}, keep)
        return keep

    # ---- routes ----------------------------------------------------------------------

    def _health(self) -> tuple[int, bytes, str | None]:
        return 200, b"", None

    def _version(self) -> tuple[int, bytes, str | None]:
        return 200, json.dumps({"version": self.version}).encode(), "application/json"

    def _models(self) -> tuple[int, bytes, str | None]:
        permission = {
            "id": f"modelperm-{uuid.uuid4().hex}",
            "object": "model_permission",
            "created": self._created,
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        cards = [
            {
                "id": name,
                "object": "model",
                "created": self._created,
                "owned_by": "vllm",
                "root": self.root,
                "parent": None,
                "max_model_len": self.max_model_len,
                "permission": [permission],
            }
            for name in self.served_names
        ]
        return 200, json.dumps({"object": "list", "data": cards}).encode(), "application/json"

    def _metrics(self) -> tuple[int, bytes, str | None]:
        labels = f'{{engine="0",model_name="{self.model_id}"}}'
        series = [
            ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", self._running),
            ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", self._waiting),
            ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", self._prompt_tokens_total),
            (
                "vllm:generation_tokens_total",
                "counter",
                "Number of generation tokens processed.",
                self._generation_tokens_total,
            ),
        ]
        lines = []
        for name, kind, help_text, value in series:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{labels} {float(value)}"]
        return 200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4; charset=utf-8"

    async def _chat(self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        arrival = time.monotonic()
        try:
            body: Any = json.loads(request.body)
        except ValueError:
            body = None
        reject: _Reject | None = None
        try:
            images = self._images(body)
        except _Reject as exc:
            images, reject = [], exc
        fault = self._pick_fault([image.digest for image in images])
        response: dict[str, Any] | None = None
        if fault is not None and fault.kind != "ok":
            outcome = f"status:{fault.status}" if fault.kind == "status" else fault.kind
        else:
            if reject is None:
                try:
                    response = self._completion(body, images)
                except _Reject as exc:
                    reject = exc
            outcome = "ok" if reject is None else f"status:{reject.status}"
        if not self.keep_bodies:
            entry: dict[str, Any] = {}
        elif isinstance(body, dict):
            entry = dict(body)
        else:
            entry = {"_raw": request.body[:1000].decode("utf-8", "replace")}
        entry.update(_outcome=outcome, _time=arrival, _images=[image.digest for image in images])
        with self._lock:
            self.requests.append(entry)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, reader, writer, fault, reject, response)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(
        self,
        request: _Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        fault: Fault | None,
        reject: _Reject | None,
        response: dict[str, Any] | None,
    ) -> bool:
        keep = request.keep_alive
        if fault is not None and fault.kind == "status":
            headers = [] if fault.retry_after is None else [("retry-after", f"{fault.retry_after:g}")]
            text = f"Simulated HTTP {fault.status} from vllm_sim."
            body = fault.body.encode() if fault.body is not None else json.dumps(_error_json(fault.status, text)).encode()
            await _send(writer, fault.status, body, keep, "application/json", headers)
            return keep
        if fault is not None and fault.kind == "reset":
            _reset(writer)
            return False
        if fault is not None and fault.kind == "timeout":
            try:  # read() returns at EOF, i.e. when the client gives up and closes
                await asyncio.wait_for(reader.read(), fault.hold)
            except asyncio.TimeoutError:
                pass
            return False
        if reject is not None:
            await _send_json(writer, reject.status, reject.payload, keep)
            return keep
        assert response is not None
        await self._process(response)
        await _send_json(writer, 200, response, keep)
        return keep

    async def _process(self, response: dict[str, Any]) -> None:
        """Occupy a capacity slot for ``latency`` seconds, as a batching engine would."""
        self._waiting += 1
        try:
            if self._slots is not None:
                await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        self.max_running = max(self.max_running, self._running)
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            usage = response["usage"]
            self._prompt_tokens_total += usage["prompt_tokens"]
            self._generation_tokens_total += usage["completion_tokens"]
        finally:
            self._running -= 1
            if self._slots is not None:
                self._slots.release()

    # ---- request semantics -----------------------------------------------------------

    def _pick_fault(self, digests: list[str]) -> Fault | None:
        with self._lock:
            for matches, fault in self._image_rules:
                if any(matches(digest) for digest in digests):
                    return fault
            if self._faults:
                return self._faults.popleft()
            if self.fault_rate and self._rng.random() < self.fault_rate:
                return self._rng.choice(
                    [
                        Fault("status", 500),
                        Fault("status", 503, retry_after=0),
                        Fault("status", 429, retry_after=0),
                        Fault("reset"),
                        Fault("timeout"),
                    ]
                )
        return None

    def _images(self, body: Any) -> list[_Image]:
        """Validate the body's shape and load every image as vLLM would, in order."""
        if not isinstance(body, dict):
            raise _Reject(
                400,
                "1 validation error:\n  {'type': 'json_invalid', 'loc': 'body', 'msg': 'JSON decode error'}",
                "body",
                "Bad Request",
            )
        messages = body.get("messages")
        if not isinstance(messages, list):
            kind, msg = ("missing", "Field required") if messages is None else ("list_type", "Input should be a valid list")
            raise _Reject(
                400,
                f"1 validation error:\n  {{'type': '{kind}', 'loc': 'body.messages', 'msg': '{msg}'}}",
                "body.messages",
                "Bad Request",
            )
        images = []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(message, dict) or "role" not in message:
                raise _Reject(400, "Each message needs a 'role'.", "body.messages", "Bad Request")
            for part in content if isinstance(content, list) else ():
                part_type = part.get("type") if isinstance(part, dict) else None
                if part_type == "image_url":
                    image_url = part.get("image_url")
                    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
                        raise _Reject(400, "image_url must be an object with a string 'url'.", "body.messages")
                    images.append(_load_image(image_url["url"]))
                elif part_type != "text":
                    raise _Reject(400, f"Unknown part type: {part_type}")
        return images

    def _completion(self, body: dict[str, Any], images: list[_Image]) -> dict[str, Any]:
        model = body.get("model")
        if model is not None and model not in self.served_names:
            raise _Reject(
                404,
                f"The model `{model}` does not exist. Valid aliases: {', '.join(self.served_names)}.",
                "model",
                "NotFoundError",
            )
        if body.get("stream"):
            raise _Reject(501, "vllm_sim does not stream; send stream=false.", "stream")
        param = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        max_tokens = body.get(param)
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise _Reject(400, f"max_tokens must be at least 1, got {max_tokens}.", param)
        prompt = _prompt_text(body["messages"])
        prompt_tokens = sum(image.tokens for image in images) + math.ceil(len(prompt) / 4)
        limit = self.max_model_len
        if self.context_check == "reject":
            requested = prompt_tokens + (max_tokens or 0)
            if requested > limit:
                raise _Reject(
                    400,
                    f"This model's maximum context length is {limit} tokens. However, you requested "
                    f"{requested} tokens ({prompt_tokens} in the messages, {max_tokens or 0} in the "
                    f"completion). Please reduce the length of the messages or completion.",
                )
        else:
            if max_tokens is not None and max_tokens > limit:
                raise _Reject(
                    400,
                    f"{param}={max_tokens} cannot be greater than max_model_len={limit}. "
                    f"Please request fewer output tokens.",
                    param,
                )
            if prompt_tokens > limit:
                raise _Reject(
                    400,
                    f"This model's maximum context length is {limit} tokens. However, your prompt "
                    f"contains {prompt_tokens} input tokens, which exceeds this limit even without "
                    f"any output tokens. Please reduce the length of the input prompt.",
                    "input_tokens",
                )
        budget = limit - prompt_tokens if max_tokens is None else min(max_tokens, limit - prompt_tokens)
        words = min(self.completion_tokens, budget)
        content = _caption([image.digest for image in images], prompt, words)
        scripted = self.respond(body) if self.respond is not None else None
        if scripted is not None:
            content, words = scripted, self.completion_tokens  # a whole answer: finish_reason "stop"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model if model is not None else self.model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None, "tool_calls": []},
                    "logprobs": None,
                    "finish_reason": "length" if words < self.completion_tokens else "stop",
                    "stop_reason": None,
                }
            ],
            "system_fingerprint": None,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": words,
                "total_tokens": prompt_tokens + words,
                "prompt_tokens_details": None,
            },
            "prompt_logprobs": None,
            "kv_transfer_params": None,
        }


def _load_image(url: str) -> _Image:
    """Decode a data URL's image header as vLLM's MediaConnector would; http URLs are not fetched."""
    if url[:5].lower() != "data:":
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme in ("http", "https"):
            return _Image(image_digest(url), 0)
        raise _Reject(400, "The URL must be either a HTTP, data or file URL.")
    spec, sep, payload = url[5:].partition(",")
    if not sep:
        raise _Reject(400, f"Invalid data URL {url[:32]!r}: missing ',' separator.")
    _media_type, sep, encoding = spec.rpartition(";")
    if not sep or encoding != "base64":
        raise _Reject(501, "Only base64 data URLs are supported for now.")
    try:
        data = pybase64.b64decode(payload, validate=True)  # SIMD: the simulator's CPU is not the client's
    except (binascii.Error, ValueError) as exc:
        raise _Reject(400, f"Invalid base64 in image data URL: {exc}") from exc
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except UnidentifiedImageError as exc:
        raise _Reject(400, str(exc)) from exc
    tokens = math.ceil(width / IMAGE_PATCH_PX) * math.ceil(height / IMAGE_PATCH_PX)
    return _Image(hashlib.sha256(data).hexdigest(), tokens)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    total = 0
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        total += size
        if total > MAX_BODY_BYTES:
            raise ConnectionResetError("chunked body over MAX_BODY_BYTES")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    keep_alive: bool,
    content_type: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"date: {formatdate(usegmt=True)}",
        "server: vllm-sim",
        f"content-length: {len(body)}",
    ]
    if content_type:
        lines.append(f"content-type: {content_type}")
    lines += [f"{name}: {value}" for name, value in headers]
    if not keep_alive:
        lines.append("connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


async def _send_json(writer: asyncio.StreamWriter, status: int, payload: Any, keep_alive: bool) -> None:
    await _send(writer, status, json.dumps(payload).encode(), keep_alive, "application/json")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer gets a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None and not writer.transport.is_closing():
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already gone; abort() below is all that is left to do
    writer.transport.abort()
