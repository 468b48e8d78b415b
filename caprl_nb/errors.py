"""The one exception tree of caprl_nb.

Every error we raise derives from :class:`CapRLError`, and every message says what to do next.
Third-party exceptions (httpx, openai, Pillow, sqlite3) are translated at the boundary that owns
them: images.py for Pillow, client.py for HTTP, store.py for SQLite.

::

    CapRLError
    ├── ConfigError                 bad option or environment value
    │   ├── SettingNotAllowedError  (also PermissionError) a setting only an admin may make
    │   └── ModelNotChosenError     the server serves several models and none was chosen
    ├── ColumnNotFoundError         (also KeyError) a column the frame does not have
    ├── PathNotAllowedError         (also PermissionError) a path outside what may be read
    ├── ImageError                  one input could not become an image payload
    │   ├── ImageNotFoundError      no file / URL answered 404
    │   ├── ImageDecodeError        bytes that are not a readable image
    │   ├── ImageTooLargeError      over the byte cap or a decompression bomb
    │   └── UnsupportedImageError   a Python object we cannot read as an image (or a missing value)
    ├── ServerError                 the model server
    │   ├── ServerUnavailableError  nothing answered (connection refused, DNS, timeouts)
    │   │   └── CheckpointChangedError  the server came back mid-batch serving other weights
    │   ├── ServerTimeoutError      the server took longer than the read timeout
    │   ├── RequestRejectedError    a 4xx the server will never accept as sent
    │   ├── ServerBusyError         429 / 5xx after all retries
    │   └── EngineError             `caprl-nb serve` could not start the engine
    ├── AnswerError                 an answer that cannot be kept (never stored; retried next run)
    │   ├── EmptyAnswerError        the completion was empty
    │   ├── ParseError              no JSON object could be read from the answer
    │   ├── TruncatedError          cut off at max_tokens before the JSON object was complete
    │   └── ValidationError         JSON that does not satisfy the schema
    ├── NotStoredError              offline=True and the row's answer is not in the store
    ├── VerifyError                 verify: a row that cannot be scored
    │   ├── NoCaptionError          the row has no caption to score
    │   └── NoQuestionKeptError     no usable question (none read, or the filters dropped all)
    ├── ExportError                 an export could not be written (nothing was published)
    │   ├── ExportTargetError       (also FileExistsError) the target exists and may not be replaced
    │   └── ExportImageError        errors="raise" and some rows' images could not be read
    ├── StoreError                  the SQLite result store
    └── BatchError                  errors="raise": every failed row, as a DataFrame

    CapRLWarning (UserWarning)      failed rows under errors="coerce"; settings adjusted to fit

A failed row is data, not an exception: its ``error`` text reads ``"<kind>: <message>"`` and its
``error_type`` is the class name here (``"ImageDecodeError"``); :func:`row_error` writes the text,
:func:`error_class` finds the class again from ``error_type``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from types import FrameType

    import pandas as pd

__all__ = [
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
    "StoreError",
    "TruncatedError",
    "UnsupportedImageError",
    "ValidationError",
    "VerifyError",
]


class CapRLError(Exception):
    """Base of every error caprl_nb raises."""


class ConfigError(CapRLError, ValueError):
    """An option or environment variable has a value we cannot use."""


class SettingNotAllowedError(ConfigError, PermissionError):
    """A setting the Jupyter server's configuration reserves to its admin (e.g. the model server URL)."""


class ModelNotChosenError(ConfigError):
    """The model server serves several models, none called ``caprl``, and no model was chosen."""

    def __init__(self, message: str, models: tuple[str, ...]) -> None:
        super().__init__(message)
        self.models = models  # the served ids, to choose from


class ColumnNotFoundError(CapRLError, KeyError):
    """The DataFrame has no such column."""

    def __init__(self, column: object, columns: list[object]) -> None:
        self.column = column
        self.columns = columns
        shown = ", ".join(repr(c) for c in columns[:50]) or "(none)"
        more = f" and {len(columns) - 50} more" if len(columns) > 50 else ""
        super().__init__(
            f"No column {column!r} in this DataFrame. Its columns are: {shown}{more}. "
            "Pass the name of the column that holds the images."
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class PathNotAllowedError(CapRLError, PermissionError):
    """A path that leaves the directory it must stay in (``..`` or a symlink pointing out)."""


class ImageError(CapRLError):
    """One input could not be turned into an image for the model."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """No file at that path, or the URL answered 404."""


class ImageDecodeError(ImageError):
    """The bytes are not an image Pillow can read."""


class ImageTooLargeError(ImageError):
    """Over the byte cap, or more pixels than we will decode (decompression-bomb guard)."""


class UnsupportedImageError(ImageError, TypeError):
    """A value we do not know how to read as an image (including NA)."""


class ServerError(CapRLError):
    """The model server failed or could not be reached."""


class ServerUnavailableError(ServerError, ConnectionError):
    """No server answered at the base URL."""


class CheckpointChangedError(ServerUnavailableError):
    """The server came back mid-batch serving another checkpoint: one batch never mixes two."""


class ServerTimeoutError(ServerError, TimeoutError):
    """The server did not answer within the timeout."""


class RequestRejectedError(ServerError):
    """The server refused the request (a 4xx other than 429); retrying would not help."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ServerBusyError(ServerError):
    """429 or 5xx answers outlasted every retry."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class EngineError(ServerError):
    """The model-server engine (vLLM) could not be found or started."""


class AnswerError(CapRLError):
    """The server answered, but the answer cannot be kept: it is never stored, so the next run
    asks again. A row's failure (its ``error_type``), not something a call raises."""

    # How the row's error text names the kind (``"<label>: <message>"``); the class name unless
    # the text has always said something else.
    label: ClassVar[str] = ""


class EmptyAnswerError(AnswerError):
    """The server returned an empty completion; check the server's log."""


class ParseError(AnswerError):
    """No JSON object could be read from a structured answer (not JSON, or none in it)."""


class TruncatedError(AnswerError):
    """The answer was cut off at ``max_tokens`` before its JSON object was complete; raise
    ``max_tokens``. Its rows' error text says ``"Truncated: ..."``, as it always has."""

    label = "Truncated"


class ValidationError(AnswerError):
    """A JSON answer that does not satisfy the schema (the field and the rule are named)."""


class NotStoredError(CapRLError):
    """``offline=True`` sends nothing to a server, and this row's answer is not in the store."""


class VerifyError(CapRLError):
    """``verify``: a row that cannot be scored (its ``error_type``; a call never raises it)."""


class NoCaptionError(VerifyError):
    """The row has no caption to score; caption it first (``df.caprl.caption``)."""


class NoQuestionKeptError(VerifyError):
    """No usable question for the row: none could be read from the question model, or the
    filters dropped every one (each question's ``dropped`` says why)."""


class ExportError(CapRLError):
    """An export could not be written; the target was left as it was."""


class ExportTargetError(ExportError, FileExistsError):
    """The target path exists and ``overwrite=False``, or it holds something no export made."""


class ExportImageError(ExportError):
    """``errors="raise"``: rows whose image could not be read, every one of them.

    ``failure_cases`` is a DataFrame indexed like the exported frame with ``input`` (the
    image, described) and ``error``. Nothing was published: fix or drop those rows and export
    again, or pass ``errors="skip"`` (``--skip-unreadable``) to leave them out (they are then
    listed in the export's manifest).
    """

    def __init__(self, failure_cases: pd.DataFrame, total: int) -> None:
        self.failure_cases = failure_cases
        self.total = total
        n = len(failure_cases)
        lines = [
            f"{n} of {total} selected rows have an image that cannot be read, so nothing was "
            "written. Fix or drop those rows and export again, or pass errors='skip' (--skip-unreadable) to leave "
            "them out (they are listed in the export's manifest)."
        ]
        for label, row in failure_cases.head(20).iterrows():
            lines.append(f"  [{label!r}] {row['error']}")
        if n > 20:
            lines.append(f"  ... and {n - 20} more (see .failure_cases)")
        super().__init__("\n".join(lines))


class StoreError(CapRLError):
    """The SQLite result store could not be opened or written."""


class BatchError(CapRLError):
    """Raised by ``errors="raise"`` after the whole batch ran; carries every failed row.

    ``failure_cases`` is a DataFrame indexed like the input with the columns ``input``,
    ``error`` and ``error_type``. Everything that succeeded was stored, so running the call again only retries
    the failures.
    """

    def __init__(self, failure_cases: pd.DataFrame, total: int) -> None:
        self.failure_cases = failure_cases
        self.total = total
        n = len(failure_cases)
        lines = [
            (
                f"{n} of {total} rows failed. Every successful row was stored; run the same call "
                "again to retry only the failures, or pass errors='coerce' to get NA for failed rows."
            ),
        ]
        for index, row in failure_cases.head(20).iterrows():
            lines.append(f"  [{index!r}] {row['error']}")
        if n > 20:
            lines.append(f"  ... and {n - 20} more (see .failure_cases)")
        super().__init__("\n".join(lines))


class CapRLWarning(UserWarning):
    """A batch finished with failed rows (errors="coerce"), or a setting was adjusted to fit."""


def row_error(exc: BaseException) -> str:
    """A failed row's ``error`` text: ``"ImageDecodeError: <message>"`` (the kind, then why)."""
    return f"{error_label(type(exc))}: {str(exc) or type(exc).__name__}"


def error_label(kind: type[BaseException]) -> str:
    """How a row's error text names ``kind``: its class name (``"Truncated"`` for TruncatedError)."""
    return getattr(kind, "label", "") or kind.__name__


def error_class(error_type: object) -> type[CapRLError] | None:
    """The caprl_nb error class a row's ``error_type`` names; None for any other name."""
    cls = globals().get(error_type) if isinstance(error_type, str) else None
    return cls if isinstance(cls, type) and issubclass(cls, CapRLError) else None


def warn(message: str) -> None:
    """Issue a CapRLWarning attributed to the first caller outside caprl_nb (the user's line)."""
    import sys
    import warnings
    from pathlib import Path

    package = str(Path(__file__).resolve().parent)
    level = 2
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame = frame.f_back
        level += 1
    warnings.warn(message, CapRLWarning, stacklevel=level)
