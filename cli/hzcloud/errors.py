"""The one domain error, and site-file problems that name file, line, key and fix."""

from __future__ import annotations

from dataclasses import dataclass


class HzError(Exception):
    """An operation failed: what happened, why, and what the operator can do."""

    exit_code = 1

    def __init__(self, what: str, cause: str = "", fix: str = "") -> None:
        super().__init__(what)
        self.what, self.cause, self.fix = what, cause, fix


class UsageError(HzError):
    """The request cannot be carried out as asked (bad input); nothing was touched."""

    exit_code = 2


class Stopped(HzError):
    """The operator stopped the run (Ctrl-C, SIGINT, SIGTERM): 128 + SIGINT, as a shell reports
    an interrupted command."""

    exit_code = 130


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a site file."""

    file: str
    line: int | None
    key: str
    what: str
    fix: str

    def __str__(self) -> str:
        place = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{place}{key} {self.what} (fix: {self.fix})"


class SiteError(HzError):
    """The site's files are wrong; nothing was touched."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        n = len(problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the site files")
        self.problems = problems
