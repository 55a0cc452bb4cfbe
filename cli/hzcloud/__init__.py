"""hzcloud: a hospital's rack of servers as a private cloud."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # Read on demand: importlib.metadata costs ~80 ms, which every command would pay at start.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("hzcloud")
        except PackageNotFoundError:  # running from a source tree
            return "0.0.0+src"
    raise AttributeError(name)
