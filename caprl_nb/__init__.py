"""caprl_nb: caption, question and review a column of images with CapRL models served by vLLM.

``import caprl_nb`` registers ``DataFrame.caprl`` and ``Series.caprl``.
"""

from caprl_nb import accessor as _accessor  # noqa: F401  (registers the pandas accessors)
from caprl_nb.__about__ import __version__
from caprl_nb.config import Settings, configure
from caprl_nb.errors import (
    BatchError,
    CapRLError,
    CapRLWarning,
    ColumnNotFoundError,
    ConfigError,
    EngineError,
    ImageDecodeError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    RequestRejectedError,
    ServerBusyError,
    ServerError,
    ServerTimeoutError,
    ServerUnavailableError,
    StoreError,
    UnsupportedImageError,
)
from caprl_nb.frames import ask, caption
from caprl_nb.prompts import CAPTION_PROMPT

__all__ = [
    "CAPTION_PROMPT",
    "BatchError",
    "CapRLError",
    "CapRLWarning",
    "ColumnNotFoundError",
    "ConfigError",
    "EngineError",
    "ImageDecodeError",
    "ImageError",
    "ImageNotFoundError",
    "ImageTooLargeError",
    "RequestRejectedError",
    "ServerBusyError",
    "ServerError",
    "ServerTimeoutError",
    "ServerUnavailableError",
    "Settings",
    "StoreError",
    "UnsupportedImageError",
    "__version__",
    "ask",
    "caption",
    "configure",
]
