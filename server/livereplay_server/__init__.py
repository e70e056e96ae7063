"""livereplay-server: the daemon. `livereplay serve` runs it; see `cli.py`."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("livereplay-server")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
