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
    ImageDecodeError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    ModelNotChosenError,
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
    "ExtractionReview",
    "Gallery",
    "ImageDecodeError",
    "ImageError",
    "ImageNotFoundError",
    "ImageTooLargeError",
    "ModelNotChosenError",
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
    if name == "extract":
        import importlib

        return importlib.import_module("caprl_nb.extract")
    raise AttributeError(f"module 'caprl_nb' has no attribute {name!r}")
