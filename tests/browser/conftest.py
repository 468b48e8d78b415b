"""Every test in this folder drives a real Chromium through Playwright: all are marked ``browser``.

Deselect them with ``pytest -m "not browser"``. Each module still skips itself when Debian's
chromium is missing, unless CAPRL_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's hook sees the whole session's items, so only those collected from this folder.
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)
