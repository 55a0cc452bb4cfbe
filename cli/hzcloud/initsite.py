"""Making a site folder: from answers (wizard or flags) or from an existing site.yaml."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hzcloud.errors import Problem, SiteError, UsageError
from hzcloud.model import SITE_FILE, Site, parse_site
from hzcloud.resources import resource
from hzcloud.siteyaml import (
    MAX_BYTES,
    access_error,
    load_yaml_bytes,
    read_in_folder,
    require_writable,
)


@dataclass(frozen=True)
class ServerAnswer:
    name: str
    address: str
    disks: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class SiteAnswers:
    name: str
    code: str
    servers: tuple[ServerAnswer, ...]
    ssh_user: str = "root"
    ssh_key: str = "~/.ssh/id_ed25519"
    management: str = ""
    postgres_vip: str = ""
    kubernetes_vip: str = ""
    mirror: str = ""
    ntp: tuple[str, ...] = field(default_factory=tuple)


def slug(text: str) -> str:
    """A site code proposed from the hospital's name."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:32].strip("-") or "site"


def parse_server_flag(text: str) -> ServerAnswer:
    """NAME=ADDRESS[:DISK,DISK...], as given to `hzcloud init --server`."""
    m = re.fullmatch(r"([^=]+)=([^:]+)(?::(.*))?", text.strip())
    if not m:
        raise SiteError(
            [
                Problem(
                    "--server",
                    None,
                    "",
                    f"'{text}' is not NAME=ADDRESS[:DISK,...]",
                    "write e.g. --server srv-01=10.20.0.11:/dev/sdb,/dev/sdc",
                )
            ]
        )
    disks = tuple(d for d in (m.group(3) or "").split(",") if d)
    return ServerAnswer(m.group(1).strip(), m.group(2).strip(), disks)


def guess_management(addresses: list[str]) -> str:
    """The /24 holding the first server, if every server is in it."""
    try:
        net = ipaddress.IPv4Network(f"{addresses[0]}/24", strict=False)
        if all(ipaddress.IPv4Address(a) in net for a in addresses):
            return str(net)
    except (ValueError, IndexError):
        pass
    return ""


def guess_vips(management: str, taken: list[str]) -> tuple[str, str]:
    """Two free addresses near the top of the management network, proposed for the VIPs."""
    try:
        net = ipaddress.IPv4Network(management)
    except ValueError:
        return "", ""
    used = set(taken)
    free = [
        str(a)
        for a in (net.broadcast_address - i for i in range(5, 60))
        if str(a) not in used and a in net
    ]
    return (free[1], free[0]) if len(free) >= 2 else ("", "")


def site_text(answers: SiteAnswers) -> str:
    import jinja2  # here: `plan` and `validate` never need it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource("templates") / "site")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["to_json"] = lambda v: json.dumps(list(v) if isinstance(v, tuple) else v)
    return env.get_template("site.yaml.j2").render(
        name=answers.name,
        code=answers.code,
        ssh_user=answers.ssh_user,
        ssh_key=answers.ssh_key,
        servers=answers.servers,
        management=answers.management or guess_management([s.address for s in answers.servers]),
        postgres_vip=answers.postgres_vip,
        kubernetes_vip=answers.kubernetes_vip,
        mirror=answers.mirror,
        ntp=answers.ntp,
    )


def check_text(text: str) -> Site:
    """Validate site.yaml text exactly as `hzcloud validate` would."""
    return parse_site(load_yaml_bytes(text.encode(), SITE_FILE), SITE_FILE)


def refuse_before_asking(directory: Path, force: bool) -> None:
    """The refusals write_site would give that do not depend on the answers (exit 2)."""
    target = directory / SITE_FILE
    if os.path.lexists(target) and not force:
        raise UsageError(
            f"{target} already exists",
            "hzcloud init never overwrites a site",
            "use another folder, or pass --force to replace it",
        )
    require_writable(directory)


def write_site(directory: Path, text: str, force: bool = False) -> Path:
    """Validate, then write directory/site.yaml; refuse to overwrite unless force."""
    check_text(text)
    target: Path = directory / SITE_FILE
    if os.path.lexists(target):
        same = False
        with contextlib.suppress(SiteError):  # a link, a pipe, a huge file: never the same site
            same = read_in_folder(target, MAX_BYTES)[0] == text.encode()
        if same:
            return target
        if not force:
            raise UsageError(
                f"{target} already exists",
                "hzcloud init never overwrites a site",
                "use another folder, or pass --force to replace it",
            )
    require_writable(directory)
    tmp: Path | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # A new file renamed over the name: a link there is replaced, never written through.
        fd, name = tempfile.mkstemp(prefix=f".{SITE_FILE}.", suffix=".tmp", dir=directory)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # safe to commit and to read: no secret in it
            fh.write(text.encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        refused = access_error(exc)
        if refused is None:
            raise
        raise refused from None
    return target


def text_from_file(path: Path) -> str:
    """The text of an existing site.yaml, validated (for `hzcloud init --from`)."""
    raw, _ = read_in_folder(path, MAX_BYTES)
    parse_site(load_yaml_bytes(raw, path.name), path.name)
    return raw.decode()
