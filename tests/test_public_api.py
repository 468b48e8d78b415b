import types

import caprl_nb
from caprl_nb import errors


def test_all_is_complete_and_importable() -> None:
    public = {
        name for name in dir(caprl_nb)
        if not name.startswith("_") and not isinstance(getattr(caprl_nb, name), types.ModuleType)
    }
    assert public - set(caprl_nb.__all__) == set()
    for name in caprl_nb.__all__:
        assert hasattr(caprl_nb, name)


def test_every_error_derives_from_caprl_error() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        if name == "CapRLWarning":
            assert issubclass(cls, UserWarning)
        else:
            assert issubclass(cls, errors.CapRLError)


def test_every_error_is_exported_at_the_top() -> None:
    assert set(errors.__all__) <= set(caprl_nb.__all__)
