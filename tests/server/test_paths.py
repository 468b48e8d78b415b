"""caprl_nb.server.paths: whatever path a browser sends, a file under the root or a caprl_nb error.

The HTTP behaviour of each refusal is in tests/server/test_handlers.py; here, property-based, the
promise that no string leads to another exception (a 500) or to a file outside the root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caprl_nb.errors import CapRLError, PathNotAllowedError
from caprl_nb.server.paths import resolve_inside, shown_input

# Names built from the pieces that cause trouble, and arbitrary text.
PIECES = st.sampled_from(["..", ".", "", "/", "\\", "\0", ".hidden", "pic.png", "dir", "link",
                          "loop", "out", "~", "%2e%2e", " ", "\n", "C:", "é", "x" * 300])
PATHS = st.one_of(st.lists(PIECES, max_size=6).map("/".join), st.text(max_size=80))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("paths")
    root = base / "root"
    (root / "dir" / ".hidden").mkdir(parents=True)
    (root / "pic.png").write_bytes(b"png")
    (root / "dir" / "pic.png").write_bytes(b"png")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "pic.png").write_bytes(b"png")
    (base / "out").mkdir()
    (base / "out" / "pic.png").write_bytes(b"png")
    os.symlink(base / "out", root / "link")
    os.symlink(root / "loop", root / "loop")
    return root


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, allow_hidden=st.booleans())
def test_any_path_is_a_file_under_the_root_or_a_caprl_error(root: Path, path: str, allow_hidden: bool) -> None:
    try:
        found = resolve_inside(root, path, allow_hidden=allow_hidden)
    except CapRLError:
        return
    real = root.resolve()
    assert real in found.parents and found.is_file()
    if not allow_hidden:
        assert not any(part.startswith(".") for part in found.relative_to(real).parts)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("pic.png", True), ("dir/pic.png", True), ("./pic.png", True), ("link/pic.png", False),
     ("../root/pic.png", False), (".hidden/pic.png", False), ("dir/.hidden", False)],
)
def test_examples(root: Path, path: str, allowed: bool) -> None:
    if allowed:
        assert resolve_inside(root, path) == (root / path).resolve()
    else:
        with pytest.raises(PathNotAllowedError):
            resolve_inside(root, path)


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("URL https://b.s3.amazonaws.com/x.png?X-Amz-Signature=abc", "URL https://b.s3.amazonaws.com/x.png"),
        ("url 'https://h/x.png?sig=1#frag'", "url 'https://h/x.png'"),
        ("URL https://h/x.png#only-fragment", "URL https://h/x.png"),
        ("URL https://u:p@h/x.png", "URL https://h/x.png"),
        ("URL http://h/x.png", "URL http://h/x.png"),
        ("file 'a?b.png'", "file 'a?b.png'"),
    ],
)
def test_shown_input_drops_url_secrets(tmp_path: Path, stored: str, shown: str) -> None:
    assert shown_input(stored, tmp_path) == shown
