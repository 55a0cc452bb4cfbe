"""The lab's error: an HzError, so the CLI edge reports it like any other."""

from __future__ import annotations

from hzcloud.errors import HzError


class LabError(HzError):
    """The lab could not be made, inspected or removed: what, why, and the fix."""

    def __str__(self) -> str:
        lines = [self.what]
        if self.cause:
            lines.append(f"cause: {self.cause}")
        if self.fix:
            lines.append(f"fix:   {self.fix}")
        return "\n".join(lines)


class LabUsageError(LabError):
    """The request names no lab or no node of it, or cuts a stopped node: exit 2, nothing touched."""

    exit_code = 2
