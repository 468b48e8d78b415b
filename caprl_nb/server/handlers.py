"""REST handlers under ``/caprl/``; every verb is ``@tornado.web.authenticated``.

Errors are caprl_nb errors turned into HTTP answers by :func:`http_status`, one place,
never a blanket 500: ``{"error": "<what happened and what to do>", "status": <code>}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin

from caprl_nb import errors, images
from caprl_nb.batch import BatchRunner
from caprl_nb.config import Settings
from caprl_nb.errors import (
    CapRLError,
    ConfigError,
    ImageNotFoundError,
    ImageTooLargeError,
    PathNotAllowedError,
    UnsupportedImageError,
)
from caprl_nb.prompts import caption_task
from caprl_nb.store import ResultStore

if TYPE_CHECKING:
    from caprl_nb.server.app import CapRLApp

__all__ = ["HANDLERS", "http_status", "resolve_inside"]

_STATUS: list[tuple[type[CapRLError], int]] = [
    (PathNotAllowedError, 403),
    (ImageNotFoundError, 404),
    (ImageTooLargeError, 413),
    (errors.ServerTimeoutError, 504),
    (errors.ServerError, 502),  # unavailable, busy, rejected by the model server, engine
    (errors.StoreError, 503),
    (errors.ImageError, 400),
    (ConfigError, 400),
    (errors.ColumnNotFoundError, 400),
    (errors.BatchError, 502),
]


def http_status(exc: BaseException | type[BaseException]) -> int:
    """The HTTP status for a caprl_nb error or error class (the first match in ``_STATUS``)."""
    kind = exc if isinstance(exc, type) else type(exc)
    for cls, status in _STATUS:
        if issubclass(kind, cls):
            return status
    return 500


def _status_of_row_error(message: str) -> int:
    """A batch row's error is text ("ImageDecodeError: ..."); its class name picks the status."""
    cls = getattr(errors, message.split(":", 1)[0], None)
    if isinstance(cls, type) and issubclass(cls, CapRLError):
        return http_status(cls)
    return 502


def resolve_inside(root: str | os.PathLike[str], relative: str) -> Path:
    """``relative`` under ``root``, refusing ``..``, absolute paths and symlinks that leave it."""
    if not isinstance(relative, str) or not relative.strip():
        raise ConfigError('Send {"path": "<file relative to the Jupyter root>"}.')
    base = Path(root).resolve()
    target = (base / relative.lstrip("/")).resolve()
    if target != base and base not in target.parents:
        msg = f"{relative!r} is outside the Jupyter root; only files under it can be captioned."
        raise PathNotAllowedError(msg)
    if not target.exists():
        raise ImageNotFoundError(f"No file {relative!r} under the Jupyter root.")
    if not target.is_file():
        raise UnsupportedImageError(f"{relative!r} is a folder, not an image file.")
    return target


class CapRLHandler(ExtensionHandlerMixin, APIHandler):
    extensionapp: CapRLApp

    def settings_now(self) -> Settings:
        return self.extensionapp.client_settings()

    def fail(self, exc: CapRLError) -> None:
        status = http_status(exc)
        self.set_status(status)
        self.finish(json.dumps({"error": str(exc), "status": status}))

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise ConfigError(f"The request body is not JSON ({exc}).") from exc
        if not isinstance(data, dict):
            raise ConfigError("The request body must be a JSON object.")
        return data


class StatusHandler(CapRLHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        try:
            document = await self.extensionapp.probe.status(self.settings_now())
        except CapRLError as exc:
            self.fail(exc)
            return
        self.finish(json.dumps(document))


class CaptionHandler(CapRLHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        try:
            path = self.body().get("path")
            full = resolve_inside(self.extensionapp.serverapp.root_dir, path)
            self.finish(json.dumps({"path": path, **await self._caption(full)}))
        except CapRLError as exc:
            self.fail(exc)

    async def _caption(self, full: Path) -> dict[str, Any]:
        if not images.is_image_path(full):
            raise UnsupportedImageError(f"{full.name} is not an image file (png, jpg, webp, gif, bmp, tiff).")
        limit = self.extensionapp.max_file_bytes
        if full.stat().st_size > limit:
            msg = f"{full.name} is {full.stat().st_size:,} bytes, over the {limit:,}-byte limit (CapRLApp.max_file_bytes)."
            raise ImageTooLargeError(msg)
        settings = self.settings_now()
        task = caption_task()
        runner = BatchRunner(task, settings)
        try:
            result = (await runner.run([str(full)], 1))[0]
        finally:
            runner.close()
        if result.error is not None:
            self.set_status(_status_of_row_error(result.error))
            return {"error": result.error, "status": self.get_status()}
        source = images.identify(str(full))
        with ResultStore(settings.store_path) as store:
            record = store.provenance(task.cache_key(source.sha256, result.model or "")) or {}
        return {
            "caption": result.text, "cached": result.cached, "model": result.model,
            "latency_s": result.latency_s, "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens, "finish_reason": result.finish_reason,
            "server_version": record.get("server_version"), "base_url": record.get("base_url"),
            "created_at": record.get("created_at"),
        }


class RecentHandler(CapRLHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        try:
            limit = max(1, min(200, int(self.get_argument("limit", "20"))))
        except ValueError:
            self.fail(ConfigError("limit must be a whole number."))
            return
        path = self.settings_now().store_path
        if not path.exists():
            self.finish(json.dumps({"results": []}))
            return
        try:
            with ResultStore(path) as store:
                self.finish(json.dumps({"results": store.recent(limit)}))
        except CapRLError as exc:
            self.fail(exc)


class SettingsHandler(CapRLHandler):
    def _public(self) -> dict[str, Any]:
        s = self.settings_now()
        return {"base_url": s.base_url, "model": s.model, "has_api_key": s.api_key not in ("", "EMPTY")}

    @tornado.web.authenticated
    def get(self) -> None:
        self.finish(json.dumps(self._public()))

    @tornado.web.authenticated
    def post(self) -> None:
        try:
            self.extensionapp.update_runtime(self.body())
        except CapRLError as exc:
            self.fail(exc)
            return
        self.finish(json.dumps(self._public()))


HANDLERS: list[tuple[str, type[CapRLHandler]]] = [
    ("status", StatusHandler),
    ("caption", CaptionHandler),
    ("recent", RecentHandler),
    ("settings", SettingsHandler),
]
