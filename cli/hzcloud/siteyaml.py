"""Safe loading of site files: plain data plus the line of every key path."""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hzcloud.errors import Problem, SiteError, UsageError

MAX_BYTES = 1024 * 1024
# A 64-server site with every key written out is under 2,000 nodes. Counted while composing,
# so a file of many tiny nodes is refused early: pure-Python YAML is slow on them.
MAX_NODES = 10_000
# A site file is a few levels deep; the composer recurses, so a bound keeps Python's stack safe.
MAX_DEPTH = 32

KeyPath = tuple[str | int, ...]

# Every key of a site file is a plain word; anything else is never quoted back.
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Loaded:
    """A parsed YAML mapping and where each key path sits in the file."""

    data: dict[str, Any]
    lines: dict[KeyPath, int]

    def line_of(self, path: KeyPath) -> int | None:
        """The line of a key path, or of its nearest parent in the file."""
        # Not down to the root: its line is the first key, unrelated to a missing top-level key.
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None


def dotted(path: KeyPath) -> str:
    """A key path as an operator writes it: servers[2].name."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


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


_CLoader = getattr(yaml, "CSafeLoader", None)


def _compose(text: str) -> Any:
    """The document's root node. libyaml (ten times faster: a bundle entry is thousands of
    nodes) when it is there and the file is plain; anything it finds amiss, an alias, too deep
    or too many nodes is composed again by the pure-Python loader, whose checks and messages
    are the ones an operator reads."""
    if _CLoader is not None:
        try:
            depth = nodes = 0
            for event in yaml.parse(text, Loader=_CLoader):
                if isinstance(event, yaml.NodeEvent):
                    nodes += 1
                    if (
                        isinstance(event, yaml.AliasEvent)
                        or depth >= MAX_DEPTH
                        or nodes > MAX_NODES
                    ):
                        break
                    if isinstance(event, yaml.CollectionStartEvent):
                        depth += 1
                elif isinstance(event, yaml.CollectionEndEvent):
                    depth -= 1
            else:
                loader = _CLoader(text)
                try:
                    return loader.get_single_node()
                finally:
                    loader.dispose()
        except Exception:  # whatever libyaml refuses, the reference loader says why
            pass
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


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
            if not _KEY.fullmatch(key):
                # not echoed: a file that is not a site file (a password list, say) has keys
                # that must not be printed
                raise _BadKey(key_node.start_mark.line + 1)
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


def _problem(path: Path | str, what: str, fix: str) -> SiteError:
    return SiteError([Problem(str(path), None, "", what, fix)])


_NOT_FOUND_FIX = "give a site folder holding site.yaml, or create one with `hzcloud init`"

_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_in_folder(
    path: Path, cap: int, *, links: bool = True, kind: str = "a site file"
) -> tuple[bytes, os.stat_result]:
    """The bytes of path if it is a regular file inside its folder and at most cap bytes.

    A site file may be a link to another file in the same folder, never out of it: a site
    folder given by someone else must not make hzcloud read (and quote) /etc/shadow. Nothing is
    read before the checks: a FIFO would block and /dev/zero never ends. links=False refuses
    every symbolic link (secrets.yaml).
    """
    try:
        folder = Path(os.path.realpath(path.parent))
        st = os.lstat(path)
    except FileNotFoundError:
        raise _problem(path, "file not found", _NOT_FOUND_FIX) from None
    except OSError as exc:
        raise _problem(
            path, f"cannot read: {exc.strerror}", "check the path and its permissions"
        ) from None
    target = path
    if stat.S_ISLNK(st.st_mode):
        if not links:
            raise _problem(
                path,
                "is a symbolic link; this file must be the file itself",
                f'replace the link with the file: cp --remove-destination "$(readlink -f {path})" {path}',
            )
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(folder):
            raise _problem(
                path,
                f"is a symbolic link to {target}, outside the site folder {folder}",
                "keep the site's files inside its folder: put the file itself there, not a link",
            )
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(target, flags)
    except FileNotFoundError:
        raise _problem(path, "file not found", _NOT_FOUND_FIX) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _problem(
                path, "is a symbolic link that loops", "replace the link with the file itself"
            ) from None
        if exc.errno == errno.ENXIO:
            raise _problem(
                path, "is a socket, not a regular file", "replace it with the file itself"
            ) from None
        raise _problem(
            path, f"cannot read: {exc.strerror}", "check the path and its permissions"
        ) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            if path.name != "site.yaml":  # secrets.yaml, fleet.yaml...: a file was expected
                raise _problem(path, "is a folder, not a file", "replace it with the file")
            raise _problem(path, "is a folder without site.yaml", _NOT_FOUND_FIX)
        if not stat.S_ISREG(st.st_mode):
            what = _KINDS.get(stat.S_IFMT(st.st_mode), "a special file")
            raise _problem(
                path,
                f"is {what}, not a regular file",
                "make it a regular file: hzcloud never reads pipes or devices",
            )
        too_big = _problem(
            path.name,
            f"file is {st.st_size} bytes; {kind} is at most {cap} bytes",
            "check that this is the right file",
        )
        if st.st_size > cap:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        while size <= cap:  # a file that grows while read is cut at cap + 1 and refused
            chunk = os.read(fd, cap + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise too_big
        return b"".join(chunks), st
    except OSError as exc:
        raise _problem(
            path, f"cannot read: {exc.strerror}", "check the path and its permissions"
        ) from None
    finally:
        os.close(fd)


def load_yaml(path: Path) -> Loaded:
    """Read one YAML mapping from path, refusing anything unsafe or not a mapping."""
    raw, _ = read_in_folder(path, MAX_BYTES)
    return load_yaml_bytes(raw, path.name)


def writable_problem(path: Path) -> UsageError | None:
    """Why hzcloud could not write in the folder path, or None; checked before writing anything."""
    if os.access(path, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return UsageError(
        f"cannot write in {path}: "
        + ("the file system is read-only" if read_only else "permission denied"),
        "hzcloud keeps secrets.yaml and state/ in the site folder; nothing was changed",
        (
            f"remount {path} read-write, or copy the site folder to a writable place"
            if read_only
            else f"make it writable (chmod u+w {path}), or run as its owner"
        ),
    )


def require_writable(folder: Path) -> None:
    """Exit 2 naming the path when folder (or the nearest folder that exists above it), or a
    folder under its state/, cannot be written."""
    problem = unwritable(folder)
    if problem is not None:
        raise problem


def unwritable(folder: Path) -> UsageError | None:
    """Why hzcloud could not write the site folder (or a folder under its state/), or None."""
    existing = folder.resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    paths = [existing]
    state = existing / "state"
    if state.is_dir() and not state.is_symlink():
        paths.append(state)
        for root, dirs, _ in os.walk(state):
            paths += [Path(root) / d for d in dirs if not (Path(root) / d).is_symlink()]
    return next((p for p in map(writable_problem, paths) if p is not None), None)


def access_error(exc: OSError) -> UsageError | None:
    """A refused write (permissions, read-only file system) as bad input naming the path."""
    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return None
    path = exc.filename or "a file of the site"
    reason = "the file system is read-only" if exc.errno == errno.EROFS else "permission denied"
    return UsageError(
        f"cannot write {path}: {reason}",
        "hzcloud stopped at the first file it could not write",
        "make the site folder writable for this user, or copy it to a writable place",
    )


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
        root = _compose(text)
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


def shown(value: Any) -> str:
    """A value as quoted in a message, cut short: the input may be a whole file's worth."""
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def key_path(err: Any) -> KeyPath:
    """The key path of a pydantic error. pydantic names a mapping's key as (..., key, "[key]"):
    the key's own line is the place."""
    return tuple(p for p in err["loc"] if isinstance(p, str | int) and p != "[key]")


def field_problem(
    err: Any, loaded: Loaded, filename: str, fixes: dict[str, str], pattern_fixes: dict[str, str]
) -> Problem:
    """One pydantic error as a Problem: the file, the line, the key, what is wrong and the fix
    (`fixes` by error type; `pattern_fixes` by the last key, for a pattern mismatch)."""
    path = key_path(err)
    kind = err["type"]
    what = str(err["msg"])
    if kind == "missing":
        what = "required key is missing"
    elif kind == "extra_forbidden":
        what = "unknown key"
    elif kind == "string_pattern_mismatch" and path and path[-1] == "credentials":
        what = "invalid value (not shown: it may be a key)"  # a pasted secret is never echoed
    elif kind == "credentials_ref":
        pass  # its message says what was there, never the value
    elif kind == "string_pattern_mismatch":
        what = f"invalid value {shown(err['input'])}"
    elif kind in ("model_type", "dict_type"):
        what = f"expected a mapping of keys (got {shown(err.get('input'))})"
    elif "input" in err:
        what = f"{what} (got {shown(err['input'])})"
    fix = fixes.get(kind, "correct the value")
    if kind == "string_pattern_mismatch" and path:
        fix = pattern_fixes.get(str(path[-1]), fix)
    if kind in ("literal_error", "enum"):
        fix = f"use one of: {err.get('ctx', {}).get('expected', '')}".rstrip(": ")
    return Problem(filename, loaded.line_of(path), dotted(path), what, fix)
