"""caprl_nb: caption, question and review a column of images with CapRL models served by vLLM.

``import caprl_nb`` registers ``DataFrame.caprl`` and ``Series.caprl``.
"""

from caprl_nb import accessor as _accessor  # noqa: F401  (registers the pandas accessors)
from caprl_nb.__about__ import __version__
from caprl_nb.config import Settings, configure
from caprl_nb.errors import (
    AnswerError,
    BatchError,
    CapRLError,
    CapRLWarning,
    CheckpointChangedError,
    ColumnNotFoundError,
    ConfigError,
    EmptyAnswerError,
    EngineError,
    ExportError,
    ExportImageError,
    ExportTargetError,
    ImageDecodeError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    ModelNotChosenError,
    NoCaptionError,
    NoQuestionKeptError,
    NotStoredError,
    ParseError,
    PathNotAllowedError,
    RequestRejectedError,
    ServerBusyError,
    ServerError,
    ServerTimeoutError,
    ServerUnavailableError,
    SettingNotAllowedError,
    StoreError,
    TruncatedError,
    UnsupportedImageError,
    ValidationError,
    VerifyError,
)
from caprl_nb.frames import ask, caption
from caprl_nb.prompts import CAPTION_PROMPT

__all__ = [
    "CAPTION_PROMPT",
    "AnswerError",
    "BatchError",
    "CapRLError",
    "CapRLWarning",
    "CheckpointChangedError",
    "ColumnNotFoundError",
    "ConfigError",
    "EmptyAnswerError",
    "EngineError",
    "ExportError",
    "ExportImageError",
    "ExportTargetError",
    "ExtractionReview",
    "Gallery",
    "ImageDecodeError",
    "ImageError",
    "ImageNotFoundError",
    "ImageTooLargeError",
    "ModelNotChosenError",
    "NoCaptionError",
    "NoQuestionKeptError",
    "NotStoredError",
    "ParseError",
    "PathNotAllowedError",
    "RequestRejectedError",
    "ServerBusyError",
    "ServerError",
    "ServerTimeoutError",
    "ServerUnavailableError",
    "SettingNotAllowedError",
    "Settings",
    "StoreError",
    "TruncatedError",
    "UnsupportedImageError",
    "ValidationError",
    "VerifyError",
    "__version__",
    "ask",
    "caption",
    "configure",
]


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """Where Jupyter finds the server extension (enabled by jupyter-config/server-config)."""
    from caprl_nb.server import CapRLApp

    return [{"module": "caprl_nb.server", "app": CapRLApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "caprl-nb"}]


def __getattr__(name: str) -> object:
    # The widgets import ipywidgets/anywidget: load them on first use, not on `import caprl_nb`.
    if name in ("Gallery", "ExtractionReview"):
        from caprl_nb import widgets

        return getattr(widgets, name)
    # `import caprl_nb` then `caprl_nb.extract.concat_tables(...)` (as the README does): the
    # subpackage is imported on first use, keeping `import caprl_nb` light.
    # `caprl_nb.verify.verify(...)`, `caprl_nb.export.export(...)` likewise (the subpackages,
    # not their functions, are these names: df.caprl.verify / df.caprl.export call them).
    if name in ("extract", "verify", "export"):
        import importlib

        return importlib.import_module(f"caprl_nb.{name}")
    raise AttributeError(f"module 'caprl_nb' has no attribute {name!r}")
