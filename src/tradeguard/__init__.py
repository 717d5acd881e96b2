"""tradeguard: the security, compliance and privacy core of a stock-trading platform."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tradeguard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
