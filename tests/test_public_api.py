import caprl_nb
from caprl_nb import errors


def test_all_is_complete_and_importable() -> None:
    public = {name for name in dir(caprl_nb) if not name.startswith("_")}
    modules = {"accessor", "batch", "client", "config", "errors", "frames", "images", "models",
               "prompts", "store", "engine", "cli"}
    assert public - modules - set(caprl_nb.__all__) == set()
    for name in caprl_nb.__all__:
        assert hasattr(caprl_nb, name)


def test_every_error_derives_from_caprl_error() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        if name == "CapRLWarning":
            assert issubclass(cls, UserWarning)
        else:
            assert issubclass(cls, errors.CapRLError)
