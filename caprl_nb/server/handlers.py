"""REST handlers under ``/caprl/``.

Every verb is ``@tornado.web.authenticated`` and ``@authorized`` (resource ``caprl``), so a
deployment's Authorizer can limit these endpoints like Jupyter's own. Blocking work (SQLite,
reading and hashing images, path checks) runs in worker threads, never on the Jupyter server's
event loop. Errors are caprl_nb errors turned into HTTP answers by :func:`http_status`, one
place, never a blanket 500: ``{"error": "<what happened and what to do>", "status": <code>}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import tornado.web
from jupyter_server.auth.decorator import authorized
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
    SettingNotAllowedError,
    UnsupportedImageError,
)
from caprl_nb.extract import chart_table
from caprl_nb.prompts import caption_task
from caprl_nb.server.paths import relative_input, resolve_inside, shown_input
from caprl_nb.server.status import redact, summarise_untrusted
from caprl_nb.store import ResultStore

if TYPE_CHECKING:
    from caprl_nb.server.app import CapRLApp

__all__ = ["AUTH_RESOURCE", "HANDLERS", "http_status", "relative_input", "resolve_inside", "shown_input"]

# The resource name an Authorizer sees for every /caprl/ request (actions: read, write).
AUTH_RESOURCE = "caprl"

_STATUS: list[tuple[type[CapRLError], int]] = [
    (PathNotAllowedError, 403),
    (SettingNotAllowedError, 403),
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


def _json_cell(value: Any) -> Any:
    """A table cell as JSON: numbers stay numbers, NA (and non-finite floats) become null."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _optional(value: Any) -> Any:
    """A provenance value from a frame row as JSON (NA -> null, numpy scalars -> Python)."""
    if value is None or pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _image_file(root: str, path: object, allow_hidden: bool, limit: int) -> Path:
    """The image file ``path`` names under ``root``, checked (place, type, size); blocking."""
    full = resolve_inside(root, path, allow_hidden=allow_hidden)
    if not images.is_image_path(full):
        raise UnsupportedImageError(f"{full.name} is not an image file (png, jpg, webp, gif, bmp, tiff).")
    try:
        size = full.stat().st_size
    except OSError as exc:
        raise ImageNotFoundError(f"Cannot read {full.name}: {exc.strerror or exc}.") from exc
    if size > limit:
        msg = f"{full.name} is {size:,} bytes, over the {limit:,}-byte limit (CapRLApp.max_file_bytes)."
        raise ImageTooLargeError(msg)
    return full


def _caption_file(full: Path, settings: Settings) -> dict[str, Any]:
    """Caption one file through the batch machinery, store included; blocking (its own event loop)."""
    runner = BatchRunner(caption_task(), settings)
    try:
        result = asyncio.run(runner.run([str(full)], 1))[0]
        if result.error is not None:
            return {"error": result.error}
        assert runner.plan is not None and runner.store is not None
        source = images.identify(str(full), known_hash=runner.store.file_hash)
        record = runner.store.provenance(runner.plan.key(source.sha256)) or {}
    finally:
        runner.close()
    return {
        "caption": result.text, "cached": result.cached, "model": result.model,
        "checkpoint": result.checkpoint,
        "latency_s": result.latency_s, "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens, "finish_reason": result.finish_reason,
        "server_version": record.get("server_version"), "base_url": record.get("base_url"),
        "created_at": record.get("created_at"),
    }


def _recent(path: Path, limit: int, root: str) -> list[dict[str, Any]]:
    """The newest stored results, inputs as :func:`shown_input` shows them; blocking (SQLite)."""
    if not path.exists():
        return []
    with ResultStore(path) as store:
        results = store.recent(limit)
    for result in results:
        result["input"] = shown_input(str(result["input"]), root)
    return results


class CapRLHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = AUTH_RESOURCE
    extensionapp: CapRLApp

    def settings_now(self) -> Settings:
        return self.extensionapp.client_settings()

    def _redact(self, text: str) -> str:
        try:
            return redact(text, self.extensionapp.configured_settings())
        except CapRLError:  # the configuration itself is broken: there is no key to hide
            return text

    def _shown(self, kind: type[BaseException], text: str) -> str:
        """An error as the browser sees it: no API key; a chosen server's reply in our words."""
        try:
            settings = self.settings_now()
            if not self.extensionapp.is_configured(settings):
                text = summarise_untrusted(kind, text, settings)
        except CapRLError:  # the configuration itself is broken: nothing was asked of a server
            pass
        return self._redact(text)

    def fail(self, exc: CapRLError) -> None:
        status = http_status(exc)
        self.set_status(status)
        self.finish(json.dumps({"error": self._shown(type(exc), str(exc)), "status": status}))

    async def image_file(self) -> tuple[str, Path]:
        """The request's ``path`` and the image file it names, checked in a worker thread."""
        path = self.body().get("path")
        app = self.extensionapp
        allow_hidden = bool(getattr(self.contents_manager, "allow_hidden", False))
        full = await asyncio.to_thread(_image_file, app.serverapp.root_dir, path, allow_hidden, app.max_file_bytes)
        return path, full

    def row_failed(self, error: str) -> dict[str, Any]:
        """Answer with the status a failed row's error maps to; returns the error document.

        File paths in it are shown relative to the Jupyter root, as the browser named them.
        """
        self.set_status(_status_of_row_error(error))
        name, _, text = error.partition(": ")
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, CapRLError) and text:
            error = f"{name}: {self._shown(kind, text)}"
        root = self.extensionapp.serverapp.root_dir
        for base in {os.path.realpath(root), os.path.abspath(root)}:
            error = error.replace(base.rstrip(os.sep) + os.sep, "")
        return {"error": self._redact(error), "status": self.get_status()}

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
    @authorized
    async def get(self) -> None:
        try:
            settings = self.settings_now()
            trusted = self.extensionapp.is_configured(settings)
            document = await self.extensionapp.probe.status(settings, trusted=trusted)
        except CapRLError as exc:
            self.fail(exc)
            return
        self.finish(json.dumps(document))


class CaptionHandler(CapRLHandler):
    """``POST {"path": ...}``: that image's caption, from the store or the model server."""

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            path, full = await self.image_file()
            # The batch runs its own event loop in a worker thread: its store reads and
            # writes, image reading and hashing never hold up the Jupyter server.
            answer = await asyncio.to_thread(_caption_file, full, self.settings_now())
        except CapRLError as exc:
            self.fail(exc)
            return
        if "error" in answer:
            answer = self.row_failed(answer["error"])
        self.finish(json.dumps({"path": path, **answer}))


class ExtractTableHandler(CapRLHandler):
    """``POST {"path": ...}``: the chart in that image as a table (``caprl_nb.extract.chart_table``)."""

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            path, full = await self.image_file()
            self.finish(json.dumps({"path": path, **await self._extract(full)}, allow_nan=False))
        except CapRLError as exc:
            self.fail(exc)

    async def _extract(self, full: Path) -> dict[str, Any]:
        settings = self.settings_now()
        options = {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)}
        try:
            # chart_table is synchronous (it runs its own event loop): keep it off the server's.
            frame = await asyncio.to_thread(
                chart_table, [str(full)], details=True, errors="raise", progress=False, **options
            )
        except errors.BatchError as exc:
            # parse, validation and truncation errors have no class of their own: 502
            return self.row_failed(str(exc.failure_cases["error"].iloc[0]))
        row = frame.iloc[0]
        table: pd.DataFrame = row["table"]
        return {
            **{key: table.attrs.get(key, "") for key in ("title", "x_label", "y_label", "units")},
            "columns": [str(name) for name in table.columns],
            "rows": [[_json_cell(v) for v in r] for r in table.astype(object).itertuples(index=False)],
            "cached": bool(row["cached"]), "model": _optional(row["model"]),
            "latency_s": _optional(row["latency_s"]), "finish_reason": _optional(row["finish_reason"]),
        }


class RecentHandler(CapRLHandler):
    """``GET ?limit=20``: the newest stored results (inputs relative to the root, URLs cut short)."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            limit = max(1, min(200, int(self.get_argument("limit", "20"))))
        except ValueError:
            self.fail(ConfigError("limit must be a whole number."))
            return
        try:
            path = self.settings_now().store_path
            root = self.extensionapp.serverapp.root_dir
            results = await asyncio.to_thread(_recent, path, limit, root)
        except CapRLError as exc:
            self.fail(exc)
            return
        self.finish(json.dumps({"results": results}))


class SettingsHandler(CapRLHandler):
    """``GET``: the model server and model in use. ``POST {"base_url"?, "model"?}``: JupyterLab's
    choice; null or "" puts a setting back to the Jupyter server's own."""

    def _public(self) -> dict[str, Any]:
        s = self.settings_now()
        return {"base_url": s.base_url, "model": s.model, "has_api_key": s.api_key not in ("", "EMPTY")}

    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        try:
            self.finish(json.dumps(self._public()))
        except CapRLError as exc:
            self.fail(exc)

    @tornado.web.authenticated
    @authorized
    def post(self) -> None:
        try:
            self.extensionapp.update_runtime(self.body())
            self.finish(json.dumps(self._public()))
        except CapRLError as exc:
            self.fail(exc)


HANDLERS: list[tuple[str, type[CapRLHandler]]] = [
    ("status", StatusHandler),
    ("caption", CaptionHandler),
    ("extract-table", ExtractTableHandler),
    ("recent", RecentHandler),
    ("settings", SettingsHandler),
]
