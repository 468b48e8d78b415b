"""The widgets' front-end bundles, and a clear error when a source checkout has not built them.

The front ends are TypeScript (labextension/src/widgets/) that esbuild bundles into static/ at
build time; wheels and sdists carry the bundles. Importing this module checks they are there,
so ``import caprl_nb.widgets`` says how to build them instead of anywidget's FileNotFoundError.
"""

from __future__ import annotations

from pathlib import Path

from caprl_nb.errors import ConfigError

STATIC = Path(__file__).parent / "static"
BUNDLES = ("gallery.js", "gallery.css", "extraction.js", "extraction.css")


def require_bundles(static: Path = STATIC) -> None:
    """Raise ConfigError, saying how to build them, when any front-end bundle is missing."""
    missing = [name for name in BUNDLES if not (static / name).is_file()]
    if missing:
        msg = (
            f"The widgets' front ends are not built: {', '.join(missing)} missing from {static}. "
            "In a source checkout run `npm run build:widgets` in labextension/ "
            "(or reinstall with `pip install -e .`, which builds them)."
        )
        raise ConfigError(msg)


require_bundles()
