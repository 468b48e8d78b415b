"""The package version, read from the installed metadata.

Its one written copy is labextension/package.json; hatch (hatch-nodejs-version) puts it in the
wheel's metadata, so nothing here repeats it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("caprl-nb")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
