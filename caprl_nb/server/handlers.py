"""REST handlers under ``/caprl/``.

Every verb is ``@tornado.web.authenticated`` and ``@authorized`` (resource ``caprl``), so a
deployment's Authorizer can limit these endpoints like Jupyter's own. Blocking work (SQLite,
reading and hashing images, path checks) runs in worker threads, never on the Jupyter server's
event loop: every image goes through :func:`caprl_nb.rows.run_one`. Errors are caprl_nb errors
(or a failed row's ``error_type``) turned into HTTP answers by :func:`http_status`, one place,
never a blanket 500: ``{"error": "<what happened and what to do>", "error_type":
"<caprl_nb.errors class>", "status": <code>}``.
"""

from __future__ import annotations

import asyncio
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
from caprl_nb.batch import RowResult
from caprl_nb.cells import optional
from caprl_nb.config import Settings
from caprl_nb.errors import (
    CapRLError,
    ConfigError,
    ImageNotFoundError,
    ImageTooLargeError,
    PathNotAllowedError,
    SettingNotAllowedError,
    UnsupportedImageError,
    error_class,
    error_label,
)
from caprl_nb.extract.columns import chart_answer_table, chart_task
from caprl_nb.prompts import Task, caption_task
from caprl_nb.rows import run_one
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
    (errors.AnswerError, 502),  # the model server's answer was empty, not JSON, cut off, invalid
    (errors.NotStoredError, 502),
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


def _status_of_row_error(error_type: str | None) -> int:
    """A failed row's status, from its ``error_type``; 502 for an error that is not ours."""
    cls = error_class(error_type)
    return 502 if cls is None else http_status(cls)


def _json_cell(value: Any) -> Any:
    """A table cell as JSON: numbers stay numbers, NA (and non-finite floats) become null."""
    value = optional(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


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


def _captioned(result: RowResult) -> dict[str, Any]:
    """A captioned row as the caption endpoint answers: the caption and its provenance."""
    return {
        "caption": result.text, "cached": result.cached, "model": result.model,
        "checkpoint": result.checkpoint,
        "latency_s": result.latency_s, "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens, "finish_reason": result.finish_reason,
        "server_version": result.server_version, "base_url": result.base_url,
        "created_at": result.created_at,
    }


def _tabled(table: pd.DataFrame, result: RowResult) -> dict[str, Any]:
    """A chart's table as the extract-table endpoint answers (cells as JSON, NA as null)."""
    return {
        **{key: table.attrs.get(key, "") for key in ("title", "x_label", "y_label", "units")},
        "columns": [str(name) for name in table.columns],
        "rows": [[_json_cell(v) for v in r] for r in table.astype(object).itertuples(index=False)],
        "cached": result.cached, "model": result.model,
        "latency_s": result.latency_s, "finish_reason": result.finish_reason,
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
        document = {"error": self._shown(type(exc), str(exc)), "error_type": type(exc).__name__,
                    "status": status}
        self.finish(json.dumps(document))

    @property
    def root_dir(self) -> str:
        """The Jupyter server's root directory (what the browser's paths are relative to)."""
        serverapp = self.extensionapp.serverapp
        assert serverapp is not None  # set once the extension is loaded, before any request
        return str(serverapp.root_dir)

    async def image_file(self) -> tuple[Any, Path]:
        """The request's ``path`` (as sent) and the image file it names, checked in a worker thread."""
        path = self.body().get("path")
        app = self.extensionapp
        allow_hidden = bool(getattr(self.contents_manager, "allow_hidden", False))
        full = await asyncio.to_thread(_image_file, self.root_dir, path, allow_hidden, app.max_file_bytes)
        return path, full

    def row_failed(self, result: RowResult) -> dict[str, Any]:
        """Answer with the status a failed row's ``error_type`` maps to; returns the error document.

        File paths in it are shown relative to the Jupyter root, as the browser named them.
        """
        assert result.error is not None
        error, kind = result.error, error_class(result.error_type)
        self.set_status(_status_of_row_error(result.error_type))
        if kind is not None:
            shown = self._shown(kind, error)
            if shown != error:  # a chosen server's reply, summarised: the kind, then our words
                error = f"{error_label(kind)}: {shown}"
        root = self.root_dir
        for base in {os.path.realpath(root), os.path.abspath(root)}:
            error = error.replace(base.rstrip(os.sep) + os.sep, "")
        return {"error": self._redact(error), "error_type": result.error_type, "status": self.get_status()}

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


class ImageTaskHandler(CapRLHandler):
    """``POST {"path": ...}``: one task over the image that path names, through
    :func:`caprl_nb.rows.run_one`; a failed row answers with its ``error_type``'s status."""

    def task(self) -> Task:
        raise NotImplementedError

    async def answer(self, result: RowResult) -> dict[str, Any]:
        """The document for a row that succeeded."""
        raise NotImplementedError

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            path, full = await self.image_file()
            result = await run_one(self.task(), str(full), self.settings_now())
            answer = self.row_failed(result) if result.error is not None else await self.answer(result)
            self.finish(json.dumps({"path": path, **answer}, allow_nan=False))
        except CapRLError as exc:
            self.fail(exc)


class CaptionHandler(ImageTaskHandler):
    """``POST {"path": ...}``: that image's caption, from the store or the model server."""

    def task(self) -> Task:
        return caption_task()

    async def answer(self, result: RowResult) -> dict[str, Any]:
        return _captioned(result)


class ExtractTableHandler(ImageTaskHandler):
    """``POST {"path": ...}``: the chart in that image as a table (``caprl_nb.extract.chart_table``)."""

    def task(self) -> Task:
        return chart_task()

    async def answer(self, result: RowResult) -> dict[str, Any]:
        assert result.text is not None
        # parsing the answer is CPU work: off the server's event loop
        table = await asyncio.to_thread(chart_answer_table, result.text)
        return _tabled(table, result)


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
            root = self.root_dir
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
