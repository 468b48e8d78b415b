"""pytest-jupyter's fixtures (jp_fetch, jp_serverapp, jp_root_dir, ...) for the tests in this folder only.

Loaded here rather than as a plugin (``pytest_plugins``), whose autouse fixtures (a fresh event
loop, a ServerApp cleanup) would then wrap every test collected after it: in this layout, every
test outside tests/browser/. Imported into a conftest, they and pytest-jupyter's async-test hooks
apply to tests/server/ alone.
"""

from pytest_jupyter.jupyter_server import *  # noqa: F403 (the plugin's fixtures and hooks, by name)
