"""A threaded HTTP server on loopback for tests that fetch URLs (like httpx's test server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.support.polling import wait_until


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], ready_path: str | None = None) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port; yields its base URL, shuts it down after.

    With ``ready_path``, waits (10 s at most) until that path answers 200 first.
    """
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        if ready_path is not None:
            wait_until(lambda: _answers(f"{base}{ready_path}"), timeout=10, what=f"{base}{ready_path}")
        yield base
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
