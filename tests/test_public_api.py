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


def test_import_caprl_nb_makes_extract_available() -> None:
    import subprocess
    import sys

    code = (
        "import caprl_nb, pandas as pd\n"
        "t = pd.DataFrame({'year': [2020, 2021], 'sales': [1.0, 2.0]})\n"
        "long = caprl_nb.extract.concat_tables(pd.Series([t]))\n"
        "assert long['value'].tolist() == [1.0, 2.0], long\n"
        "assert callable(caprl_nb.extract.scoring.table_score)\n"
        "assert callable(caprl_nb.extract.groundtruth.charts)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
