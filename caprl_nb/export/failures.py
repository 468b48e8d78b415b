"""What an export raises; the classes live in :mod:`caprl_nb.errors` (the one exception tree).

::

    CapRLError
    └── ExportError                  an export could not be written (nothing was published)
        ├── ExportTargetError        (also FileExistsError) the target exists and may not be replaced
        └── ExportImageError         errors="raise" and some rows' images could not be read
"""

from __future__ import annotations

from caprl_nb.errors import ExportError, ExportImageError, ExportTargetError

__all__ = ["ExportError", "ExportImageError", "ExportTargetError"]
