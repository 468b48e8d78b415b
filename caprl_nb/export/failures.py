"""What an export raises: every error derives from :class:`caprl_nb.errors.CapRLError`.

::

    CapRLError
    └── ExportError                  an export could not be written (nothing was published)
        ├── ExportTargetError        (also FileExistsError) the target exists and may not be replaced
        └── ExportImageError         errors="raise" and some rows' images could not be read
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caprl_nb.errors import CapRLError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ExportError", "ExportImageError", "ExportTargetError"]


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
