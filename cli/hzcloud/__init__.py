"""hzcloud: a hospital's rack of servers as a private cloud."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hzcloud")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"
