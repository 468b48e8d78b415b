"""REST handlers under ``/caprl/``; every verb is ``@tornado.web.authenticated``.

Errors are caprl_nb errors turned into HTTP answers by :func:`http_status`, one place,
never a blanket 500: ``{"error": "<what happened and what to do>", "status": <code>}``.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
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
from caprl_nb.extract import chart_table
from caprl_nb.prompts import caption_task
from caprl_nb.store import ResultStore

if TYPE_CHECKING:
    from caprl_nb.server.app import CapRLApp

__all__ = ["HANDLERS", "http_status", "relative_input", "resolve_inside"]

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


def relative_input(description: str, root: str | os.PathLike[str]) -> str:
    """A stored input (``file '/abs/root/x.png'``) with its path made relative to ``root``.

    Inputs that are not files, relative paths and paths outside ``root`` come back unchanged.
    """
    if not description.startswith("file "):
        return description
    try:
        text = ast.literal_eval(description[5:])
    except (ValueError, SyntaxError):
        return description
    if not isinstance(text, str) or not os.path.isabs(text):
        return description
    for base in {os.path.abspath(root), os.path.realpath(root)}:
        prefix = base.rstrip(os.sep) + os.sep
        if text.startswith(prefix):
            return f"file {text[len(prefix):]!r}"
    return description


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


class CapRLHandler(ExtensionHandlerMixin, APIHandler):
    extensionapp: CapRLApp

    def settings_now(self) -> Settings:
        return self.extensionapp.client_settings()

    def fail(self, exc: CapRLError) -> None:
        status = http_status(exc)
        self.set_status(status)
        self.finish(json.dumps({"error": str(exc), "status": status}))

    def image_file(self) -> tuple[str, Path]:
        """The request's ``path`` and the image file it names, checked (root, type, size)."""
        path = self.body().get("path")
        full = resolve_inside(self.extensionapp.serverapp.root_dir, path)
        if not images.is_image_path(full):
            raise UnsupportedImageError(f"{full.name} is not an image file (png, jpg, webp, gif, bmp, tiff).")
        limit = self.extensionapp.max_file_bytes
        size = full.stat().st_size
        if size > limit:
            msg = f"{full.name} is {size:,} bytes, over the {limit:,}-byte limit (CapRLApp.max_file_bytes)."
            raise ImageTooLargeError(msg)
        return path, full

    def row_failed(self, error: str) -> dict[str, Any]:
        """Answer with the status a failed row's error maps to; returns the error document."""
        self.set_status(_status_of_row_error(error))
        return {"error": error, "status": self.get_status()}

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
            path, full = self.image_file()
            self.finish(json.dumps({"path": path, **await self._caption(full)}))
        except CapRLError as exc:
            self.fail(exc)

    async def _caption(self, full: Path) -> dict[str, Any]:
        settings = self.settings_now()
        task = caption_task()
        runner = BatchRunner(task, settings)
        try:
            result = (await runner.run([str(full)], 1))[0]
            if result.error is not None:
                return self.row_failed(result.error)
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


class ExtractTableHandler(CapRLHandler):
    """``POST {"path": ...}``: the chart in that image as a table (``caprl_nb.extract.chart_table``)."""

    @tornado.web.authenticated
    async def post(self) -> None:
        try:
            path, full = self.image_file()
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
                results = store.recent(limit)
        except CapRLError as exc:
            self.fail(exc)
            return
        root = self.extensionapp.serverapp.root_dir
        for result in results:
            result["input"] = relative_input(str(result["input"]), root)
        self.finish(json.dumps({"results": results}))


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
    ("extract-table", ExtractTableHandler),
    ("recent", RecentHandler),
    ("settings", SettingsHandler),
]
