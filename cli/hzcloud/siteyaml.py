"""Safe loading of site files: plain data plus the line of every key path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hzcloud.errors import Problem, SiteError

MAX_BYTES = 1024 * 1024
# A 64-server site with every key written out is under 2,000 nodes. Counted while composing,
# so a file of many tiny nodes is refused early: pure-Python YAML is slow on them.
MAX_NODES = 10_000
# A site file is a few levels deep; the composer recurses, so a bound keeps Python's stack safe.
MAX_DEPTH = 32

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Loaded:
    """A parsed YAML mapping and where each key path sits in the file."""

    data: dict[str, Any]
    lines: dict[KeyPath, int]


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, so an alias bomb can never expand."""

    _depth = 0
    _nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooBig
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                f"alias *{event.anchor} is not allowed in a site file",
                event.start_mark,
            )
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested more than {MAX_DEPTH} levels deep",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], count: list[int]) -> Any:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise _TooBig
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise _BadKey(key_node.start_mark.line + 1)
            key = str(key)
            if key in out:
                raise _DuplicateKey(key, key_node.start_mark.line + 1, path)
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, (*path, key), lines, count)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), lines, count) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return node  # a complex key: rejected by the caller
    line = node.start_mark.line + 1
    if node.tag == "tag:yaml.org,2002:merge":
        raise _BadValue(
            line, "merge keys (<<) are not allowed in a site file", "write the keys out"
        )
    try:
        return yaml.SafeLoader.construct_object(_CONSTRUCTOR, node)
    except yaml.MarkedYAMLError as exc:
        raise _BadValue(line, str(exc.problem or exc.context), _PLAIN) from None
    except (ValueError, TypeError, AttributeError, OverflowError):
        # e.g. `!!int abc`, `!!timestamp x` or an integer with thousands of digits
        tag = node.tag.rsplit(":", 1)[-1]
        raise _BadValue(line, f"cannot read {node.value[:40]!r} as {tag}", _PLAIN) from None


_PLAIN = "write a plain value such as a name, a number or an address"


class _TooBig(Exception):
    pass


class _BadValue(Exception):
    def __init__(self, line: int, detail: str, fix: str) -> None:
        self.line, self.detail, self.fix = line, detail, fix


class _BadKey(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, path: KeyPath) -> None:
        self.key, self.line, self.path = key, line, path


_CONSTRUCTOR = yaml.SafeLoader("")


def load_yaml(path: Path) -> Loaded:
    """Read one YAML mapping from path, refusing anything unsafe or not a mapping."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SiteError(
            [
                Problem(
                    str(path),
                    None,
                    "",
                    "file not found",
                    "give a site folder holding site.yaml, or create one with `hzcloud init`",
                )
            ]
        ) from None
    except IsADirectoryError:
        raise SiteError(
            [
                Problem(
                    str(path),
                    None,
                    "",
                    "is a folder without site.yaml",
                    "give a site folder holding site.yaml, or create one with `hzcloud init`",
                )
            ]
        ) from None
    except OSError as exc:
        raise SiteError(
            [
                Problem(
                    str(path),
                    None,
                    "",
                    f"cannot read: {exc.strerror}",
                    "check the path and its permissions",
                )
            ]
        ) from None
    return load_yaml_bytes(raw, path.name)


def load_yaml_bytes(raw: bytes, name: str) -> Loaded:
    """Parse one YAML mapping; name is the file name used in messages."""

    def fail(what: str, fix: str, line: int | None = None, key: str = "") -> SiteError:
        return SiteError([Problem(name, line, key, what, fix)])

    if len(raw) > MAX_BYTES:
        raise fail(
            f"file is {len(raw)} bytes; a site file is at most {MAX_BYTES} bytes",
            "check that this is the right file",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = raw[: exc.start].count(b"\n") + 1
        raise fail(
            f"not UTF-8 text (byte {exc.start})", "save the file as UTF-8 text", at
        ) from None
    if "\x00" in text:
        raise fail(
            "contains NUL bytes: this is not a text file", "check that this is the right file"
        )
    try:
        loader = _NoAliasLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        detail = exc.problem or exc.context or "invalid YAML"
        if "alias" in detail:
            fix = "write the value out"
        elif "nested" in detail:
            fix = "check that this is the right file"
        elif "'\\t'" in detail:
            fix = "indent with spaces; YAML does not allow tabs"
        elif "another document" in detail:
            detail = "a second document (---) follows the first"
            fix = "keep one document per site file"
        else:
            fix = "fix the YAML syntax at this line"
        raise fail(f"invalid YAML: {detail}", fix, line) from None
    except yaml.YAMLError as exc:
        raise fail(f"invalid YAML: {exc}", "fix the YAML syntax") from None
    except _TooBig:
        raise fail(
            f"more than {MAX_NODES} YAML nodes", "check that this is the right file"
        ) from None
    if root is None:
        raise fail(
            "file is empty",
            "start from inventories/sample-hospital/site.yaml or run `hzcloud init`",
        )
    if not isinstance(root, yaml.MappingNode):
        raise fail(
            "top level must be a mapping of keys (hospital:, servers:, ...)",
            "start from inventories/sample-hospital/site.yaml",
            root.start_mark.line + 1,
        )
    lines: dict[KeyPath, int] = {}
    try:
        data = _walk(root, (), lines, [0])
    except _TooBig:
        raise fail(
            f"more than {MAX_NODES} YAML nodes", "check that this is the right file"
        ) from None
    except _BadKey as exc:
        raise fail("keys must be plain names", "write the key as a plain word", exc.line) from None
    except _DuplicateKey as exc:
        dotted = "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in (*exc.path, exc.key)
        ).lstrip(".")
        raise fail(f"key '{exc.key}' appears twice", "keep one of them", exc.line, dotted) from None
    except _BadValue as exc:
        raise fail(f"invalid value: {exc.detail}", exc.fix, exc.line) from None
    return Loaded(data, lines)
