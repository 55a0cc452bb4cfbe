"""Clinical service bundles: a folder of service entries, validated like site.yaml.

A bundle is a folder holding bundle.yaml (its name, version, entries and the site-facing names each
entry serves) and one YAML file per entry under it. Entries say what they need from the PaaS layer
(PostgreSQL, Redis, S3, the way in); their config and environment refer to those needs with
`${needs.KIND.FIELD}` references, each checked here so an installer never renders a dangling one.
Everything is read and checked before anything is touched; every problem comes back at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from hzcloud.errors import Problem, SiteError
from hzcloud.resources import resource
from hzcloud.siteyaml import (
    KeyPath,
    Loaded,
    dotted,
    field_problem,
    key_path,
    load_yaml_bytes,
    read_in_folder,
    shown,
)

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.plan import Plan

BUNDLE_FILE = "bundle.yaml"
# A bundle file is a page or two; an entry with its config files a few pages.
MAX_BUNDLE_BYTES = 64 * 1024
MAX_ENTRY_BYTES = 256 * 1024

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")]
Version = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+){1,3}(-[0-9A-Za-z.]+)?$")]
# containerd pulls nothing here, but it wants a fully qualified name: a registry host with a dot
# (hzcloud.local), a path and a tag; `orthanc:1.10` or `hz/orthanc:1.10` would be taken as docker.io.
ImageRef = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z0-9-]+(\.[a-z0-9-]+)+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
    ),
]
# An OCI archive under the artifacts folder's images/: a plain relative path, never out of it.
Archive = Annotated[str, StringConstraints(pattern=r"^images/[A-Za-z0-9_][A-Za-z0-9_.+-]*\.tar$")]
EntryFile = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z0-9_-]+(/[a-z0-9_-]+)*/[a-z0-9_.-]+\.yaml$|^[a-z0-9_-]+\.yaml$"
    ),
]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]
# Kubernetes quantities, the subset an entry needs: 250m or 2 CPUs, 512Mi or 2Gi of memory.
Cpu = Annotated[str, StringConstraints(pattern=r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")]
Memory = Annotated[str, StringConstraints(pattern=r"^[0-9]+(Mi|Gi)$")]
Port = Annotated[int, Field(ge=1, le=65535)]
HttpPath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9/_.~$-]*$")]
MountPath = Annotated[str, StringConstraints(pattern=r"^(/[A-Za-z0-9_.-]+)+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleFile(_Model):
    """bundle.yaml."""

    name: Name
    version: Version
    description: str = ""
    # entry name -> its file, relative to the bundle folder
    entries: dict[Name, EntryFile]
    # the names a site's bundle.services picks -> the entry that serves them; one entry may serve
    # several (the FHIR server is the patient index, codes, records and orders at once)
    offers: dict[Name, Name]


class Image(_Model):
    name: Name
    ref: ImageRef
    archive: Archive


class PostgresNeed(_Model):
    database: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
    role: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]


class RedisNeed(_Model):
    user: Name
    # the ACL user may touch only keys under this prefix
    prefix: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,32}:$")]


class S3Need(_Model):
    # S3 bucket naming: 3-63 lowercase letters, digits and '-'
    bucket: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]


class TcpPort(_Model):
    name: Name
    port: Port  # on the way in, reachable from the hospital network
    target: Port  # the container's port


class WayIn(_Model):
    host: Name  # a host name on the way in: HOST.<site domain>
    https: Port | None = None  # the container's HTTP port, served as https://HOST/ with the site CA
    tcp: list[TcpPort] = []


class Needs(_Model):
    postgres: PostgresNeed | None = None
    redis: RedisNeed | None = None
    s3: S3Need | None = None
    way_in: WayIn | None = None
    # passwords hzcloud makes once and keeps in the site's secrets (an admin user, say)
    secrets: list[Name] = []


class ConfigFile(_Model):
    path: MountPath
    content: str


class HttpProbe(_Model):
    path: HttpPath
    port: Port


class TcpProbe(_Model):
    port: Port


class Probe(_Model):
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    period: Annotated[int, Field(ge=1, le=300)] = 10
    timeout: Annotated[int, Field(ge=1, le=60)] = 2
    failures: Annotated[int, Field(ge=1, le=120)] = 3


class Probes(_Model):
    startup: Probe | None = None
    readiness: Probe
    liveness: Probe


class Quantities(_Model):
    cpu: Cpu
    memory: Memory


class Resources(_Model):
    requests: Quantities
    limits: Quantities


class Endpoint(_Model):
    name: Name
    path: HttpPath


class HttpCheck(_Model):
    path: HttpPath
    status: Annotated[int, Field(ge=100, le=599)]


class TcpCheck(_Model):
    port: Name  # a needs.way_in.tcp name


class Check(_Model):
    name: Name
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None


class Load(_Model):
    """A resource the installer PUTs on the service once it is ready (a FHIR CodeSystem, say):
    by its path, so a re-install writes the same resource again instead of a second one."""

    path: HttpPath
    # the resource as YAML; its strings may hold references (nothing secret: it is logged data)
    body: dict[str, Any]


class Entry(_Model):
    """One service entry: services/NAME.yaml."""

    name: Name
    version: Version
    description: str = ""
    # the first image runs the service; any others run before it, in order (init containers)
    images: Annotated[list[Image], Field(min_length=1)]
    needs: Needs = Needs()
    config: list[ConfigFile] = []
    env: dict[EnvName, str] = {}
    probes: Probes
    resources: Resources
    replicas: Annotated[int, Field(ge=1, le=9)] = 1
    depends_on: list[Name] = []
    endpoints: list[Endpoint] = []
    checks: Annotated[list[Check], Field(min_length=1)]
    load: list[Load] = []


# What `${needs.KIND.FIELD}` may name, and which of them are secret (they go to a Kubernetes Secret,
# never into a config file, which becomes a ConfigMap anyone with read access to the namespace sees).
FIELDS: dict[str, dict[str, bool]] = {
    "postgres": {
        "host": False,
        "port": False,
        "database": False,
        "user": False,
        "password": True,
        "url": True,
    },
    "redis": {
        # Redis behind Sentinel: ask the Sentinels (sentinels, master) where the primary is;
        # host:port is one of the Redis servers, which may be a replica after a failover
        "host": False,
        "port": False,
        "sentinels": False,
        "master": False,
        "user": False,
        "prefix": False,
        "password": True,
        # redis+sentinel://USER:PASSWORD@SENTINELS/MASTER/0 (hzcloud status's form)
        "url": True,
    },
    "s3": {
        "endpoint": False,
        "region": False,
        "bucket": False,
        "access_key": True,
        "secret_key": True,
    },
    "way_in": {"host": False},
}
# Facts about the site that are not needs: where the installer mounts the site CA, the site code,
# its DNS domain (a hospital's identifier systems are named under it: https://<domain>/mrn).
SITE_FIELDS = {"ca_file", "code", "domain"}

# `${...}` is a reference; `$${` writes a literal `${` (Orthanc's own ${VAR} in its JSON, say).
_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")


@dataclass(frozen=True)
class Ref:
    text: str  # e.g. needs.postgres.password
    secret: bool


@dataclass(frozen=True)
class LoadedEntry:
    entry: Entry
    file: str  # relative to the bundle folder
    offers: tuple[str, ...]


@dataclass(frozen=True)
class Bundle:
    name: str
    version: str
    description: str
    path: Path
    entries: dict[str, LoadedEntry]
    offers: dict[str, str]  # site-facing name -> entry name

    def entry_for(self, name: str) -> LoadedEntry | None:
        """The entry called name, or the one offering the site-facing name."""
        if name in self.entries:
            return self.entries[name]
        entry = self.offers.get(name)
        return self.entries[entry] if entry is not None else None

    def known(self) -> str:
        return ", ".join(sorted(self.offers))


def ready_within(entry: Entry) -> int:
    """Seconds a new version's pods get to become ready before its rollout counts as failed:
    the startup probe's whole budget, then the readiness probe's, and a minute to start."""
    probes = (entry.probes.startup, entry.probes.readiness)
    return 60 + sum(p.period * p.failures for p in probes if p is not None)


def default_bundle_dir() -> Path:
    return resource("bundles") / "default"


def references(text: str) -> tuple[list[Ref], list[str]]:
    """The references in text, and what is wrong with any of them (unknown, unclosed)."""
    refs: list[Ref] = []
    bad: list[str] = []
    for m in _REF.finditer(text):
        if m.group(0) == "$${":
            continue
        if m.group(1) is None:
            bad.append("'${' is not closed by '}'")
            continue
        ref = m.group(1)
        parts = ref.split(".")
        if len(parts) == 3 and parts[0] == "needs" and parts[1] in FIELDS:
            if parts[2] in FIELDS[parts[1]]:
                refs.append(Ref(ref, FIELDS[parts[1]][parts[2]]))
                continue
            bad.append(
                f"'${{{ref}}}': {parts[1]} has no field '{parts[2]}' "
                f"(it has {', '.join(FIELDS[parts[1]])})"
            )
        elif len(parts) == 3 and parts[:2] == ["needs", "secrets"]:
            refs.append(Ref(ref, True))
        elif len(parts) == 2 and parts[0] == "site" and parts[1] in SITE_FIELDS:
            refs.append(Ref(ref, False))
        else:
            bad.append(f"'${{{ref[:60]}}}' is not a reference hzcloud knows")
    return refs, bad


_REF_FIX = (
    "write ${needs.KIND.FIELD} (KIND: postgres, redis, s3, way_in, secrets), ${site.ca_file}, "
    "${site.code} or ${site.domain}; $${ writes a literal ${"
)


_FIXES = {
    "missing": "add this key",
    "extra_forbidden": "remove it, or check its spelling against bundles/default/",
    "string_pattern_mismatch": "correct the value",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "list_type": "write a list",
    "dict_type": "write a mapping of keys",
    "model_type": "write a mapping of keys",
    "string_type": "write text",
    "too_short": "list at least one",
    "greater_than_equal": "raise the value",
    "less_than_equal": "lower the value",
}

# Fixes for a pattern mismatch, by the last key of its path.
_PATTERN_FIXES = {
    "ref": "write a fully qualified image name with a tag, e.g. hzcloud.local/orthanc:1.10.1-1",
    "archive": "write the archive's path under the artifacts folder, e.g. images/orthanc-1.10.1-1.tar",
    "version": "write a version such as 1.10.1 or 8.8.0-1",
    "name": "use lowercase letters, digits and '-' (at most 32)",
    "cpu": "write CPUs as 250m or 2",
    "memory": "write memory as 512Mi or 2Gi",
    "path": "write an absolute path such as /system",
    "bucket": "use 3-63 lowercase letters, digits and '-'",
    "prefix": "write a key prefix ending in ':', e.g. fhir:",
}


def _field_problem(err: Any, loaded: Loaded, filename: str) -> Problem:
    problem = field_problem(err, loaded, filename, _FIXES, _PATTERN_FIXES)
    path = key_path(err)
    if err["type"] != "string_pattern_mismatch" or not path:
        return problem
    if path[0] == "env":
        return replace(problem, fix="write the variable's name in capitals, digits and '_'")
    if "[key]" in err["loc"]:
        what = f"invalid name {shown(err['input'])}"
        return replace(problem, what=what, fix=_PATTERN_FIXES["name"])
    if path[0] == "entries" and len(path) == 2:
        return replace(problem, fix=_ENTRY_FIX)
    return problem


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], loaded: Loaded, filename: str, problems: list[Problem]) -> M | None:
    try:
        return model.model_validate(loaded.data)
    except ValidationError as exc:
        problems += [_field_problem(err, loaded, filename) for err in exc.errors()]
        return None


def _read(folder: Path, rel: str, cap: int, kind: str) -> Loaded:
    raw, _ = read_in_folder(folder / rel, cap, kind=kind)
    return load_yaml_bytes(raw, rel)


def load_bundle(folder: Path) -> Bundle:
    """Read and check a bundle folder; SiteError with every problem of every file at once."""
    if folder.name == BUNDLE_FILE:
        folder = folder.parent
    if not folder.is_dir():
        raise SiteError(
            [
                Problem(
                    str(folder),
                    None,
                    "",
                    "bundle folder not found",
                    "give a bundle folder (bundle.yaml plus its entries), e.g. bundles/default",
                )
            ]
        )
    if not (folder / BUNDLE_FILE).is_file():
        raise SiteError(
            [
                Problem(
                    str(folder),
                    None,
                    "",
                    f"no {BUNDLE_FILE} in this folder",
                    "give a bundle folder (bundle.yaml plus its entries), e.g. bundles/default",
                )
            ]
        )
    problems: list[Problem] = []
    top_loaded = _read(folder, BUNDLE_FILE, MAX_BUNDLE_BYTES, "a bundle file")
    top = _parse(BundleFile, top_loaded, BUNDLE_FILE, problems)
    if top is None:
        raise SiteError(problems)
    entries: dict[str, LoadedEntry] = {}
    loaded_of: dict[str, Loaded] = {}
    for name, rel in top.entries.items():
        at = top_loaded.line_of(("entries", name))
        try:
            loaded = _read(folder, rel, MAX_ENTRY_BYTES, "an entry file")
        except SiteError as exc:
            problems += [
                Problem(
                    BUNDLE_FILE,
                    at,
                    f"entries.{name}",
                    f"{rel}: {p.what}",
                    "write the entry's file, or correct its path here"
                    if p.what == "file not found"
                    else p.fix,
                )
                if p.line is None and p.file.endswith(rel.rsplit("/", 1)[-1])
                else p
                for p in exc.problems
            ]
            continue
        entry = _parse(Entry, loaded, rel, problems)
        if entry is None:
            continue
        if entry.name != name:
            problems.append(
                Problem(
                    rel,
                    loaded.line_of(("name",)),
                    "name",
                    f"is '{entry.name}' but bundle.yaml lists this file as entry '{name}'",
                    "use the same name in both places",
                )
            )
        offers = tuple(k for k, v in top.offers.items() if v == name)
        entries[name] = LoadedEntry(entry, rel, offers)
        loaded_of[name] = loaded
    for service, name in top.offers.items():
        if name not in top.entries:
            problems.append(
                Problem(
                    BUNDLE_FILE,
                    top_loaded.line_of(("offers", service)),
                    f"offers.{service}",
                    f"names entry '{name}', which is not in entries",
                    f"use one of: {', '.join(top.entries)}",
                )
            )
    for name in top.entries:
        if name not in top.offers.values():
            problems.append(
                Problem(
                    BUNDLE_FILE,
                    top_loaded.line_of(("entries", name)),
                    f"entries.{name}",
                    "no name in offers picks this entry: no site can install it",
                    f"add e.g. `{name}: {name}` under offers",
                )
            )
    for name, le in entries.items():
        problems += _entry_problems(le.entry, loaded_of[name], le.file, set(top.entries))
    problems += _cycle_problems(entries, loaded_of)
    if problems:
        raise SiteError(problems)
    return Bundle(top.name, top.version, top.description, folder, entries, dict(top.offers))


_ENTRY_FIX = "write the entry file's path in the bundle folder, e.g. services/fhir.yaml"


def _entry_problems(entry: Entry, loaded: Loaded, file: str, names: set[str]) -> list[Problem]:
    out: list[Problem] = []

    def add(path: KeyPath, what: str, fix: str) -> None:
        out.append(Problem(file, loaded.line_of(path), dotted(path), what, fix))

    needs = entry.needs

    # where a secret must not go: (what it is, the fix), None for env (a Kubernetes Secret)
    config_not = (
        "a config file is not (it becomes a ConfigMap)",
        "pass it in env (a Kubernetes Secret) and read that variable from the file",
    )
    load_not = (
        "a loaded resource is not (the service keeps it for its users to read)",
        "leave credentials out of load bodies",
    )

    def check_refs(path: KeyPath, text: str, public: tuple[str, str] | None) -> None:
        refs, bad = references(text)
        for what in bad:
            add(path, what, _REF_FIX)
        for ref in refs:
            parts = ref.text.split(".")
            if parts[0] != "needs":
                continue
            if parts[1] == "secrets":
                if parts[2] not in needs.secrets:
                    add(
                        path,
                        f"'${{{ref.text}}}' names a secret the entry does not need",
                        f"add {parts[2]} to needs.secrets",
                    )
            elif getattr(needs, parts[1]) is None:
                add(
                    path,
                    f"'${{{ref.text}}}' refers to needs.{parts[1]}, which the entry does not declare",
                    f"declare needs.{parts[1]}, or remove the reference",
                )
            if public is not None and ref.secret:
                add(path, f"'${{{ref.text}}}' is secret and {public[0]}", public[1])

    for i, cfg in enumerate(entry.config):
        check_refs(("config", i, "content"), cfg.content, config_not)
    for key, value in entry.env.items():
        check_refs(("env", key), value, None)
    for i, ld in enumerate(entry.load):
        check_refs(("load", i, "body"), json.dumps(ld.body), load_not)
    load_paths = [ld.path for ld in entry.load]
    for i, p in enumerate(load_paths):
        if load_paths.index(p) != i:
            add(("load", i, "path"), f"{p} is loaded twice", "keep one resource per path")
    if entry.load and (needs.way_in is None or needs.way_in.https is None):
        add(("load",), "loading resources needs needs.way_in.https", "declare needs.way_in.https")

    seen: set[str] = set()
    for i, img in enumerate(entry.images):
        if img.name in seen:
            add(
                ("images", i, "name"),
                f"image name '{img.name}' is used twice",
                "give each image its own name",
            )
        seen.add(img.name)
        # scripts/build-images' convention: hzcloud.local/NAME:TAG is images/NAME-TAG.tar
        repo, tag = img.ref.rsplit(":", 1)
        expected = f"images/{repo.rsplit('/', 1)[-1]}-{tag}.tar"
        if img.archive != expected:
            add(
                ("images", i, "archive"),
                f"{img.archive} does not match the image {img.ref}",
                f"write {expected} (scripts/build-images names NAME:TAG images/NAME-TAG.tar)",
            )
    if needs.postgres is not None and needs.postgres.role != needs.postgres.database:
        # pods reach PostgreSQL through `hostssl samerole`: only the database named as the role
        add(
            ("needs", "postgres", "role"),
            f"role '{needs.postgres.role}' is not the database's name '{needs.postgres.database}'",
            f"name the role {needs.postgres.database} (pods reach only the database named as "
            "their role)",
        )
    paths = [c.path for c in entry.config]
    for i, p in enumerate(paths):
        if paths.index(p) != i:
            add(("config", i, "path"), f"{p} is written twice", "keep one file per path")

    ports: set[int] = set()
    tcp_names: list[str] = []
    if needs.way_in is not None:
        if needs.way_in.https is not None:
            ports.add(needs.way_in.https)
        outer: set[int] = set()
        for i, t in enumerate(needs.way_in.tcp):
            ports.add(t.target)
            if t.name in tcp_names:
                add(
                    ("needs", "way_in", "tcp", i, "name"),
                    f"'{t.name}' is used twice",
                    "give each port its own name",
                )
            if t.port in outer:
                add(
                    ("needs", "way_in", "tcp", i, "port"),
                    f"port {t.port} is used twice",
                    "give each its own port",
                )
            if t.port in (80, 443):
                add(
                    ("needs", "way_in", "tcp", i, "port"),
                    f"port {t.port} is the way in's own HTTP(S) port",
                    "use needs.way_in.https for HTTPS, or another port",
                )
            tcp_names.append(t.name)
            outer.add(t.port)
        if needs.way_in.https is None and not needs.way_in.tcp:
            add(
                ("needs", "way_in"),
                "offers neither https nor a tcp port",
                "add https: PORT or tcp: [...]",
            )
    if len(set(needs.secrets)) != len(needs.secrets):
        add(("needs", "secrets"), "a secret is listed twice", "list each secret once")

    for kind in ("startup", "readiness", "liveness"):
        probe: Probe | None = getattr(entry.probes, kind)
        if probe is None:
            continue
        path: KeyPath = ("probes", kind)
        if (probe.http is None) == (probe.tcp is None):
            add(
                path,
                "a probe is either http or tcp",
                "write one of http: {path, port} or tcp: {port}",
            )
            continue
        port = probe.http.port if probe.http is not None else probe.tcp.port if probe.tcp else 0
        if port not in ports:
            add(
                (*path, "http" if probe.http else "tcp", "port"),
                f"port {port} is not a port the entry serves ({', '.join(map(str, sorted(ports))) or 'none'})",
                "probe needs.way_in.https or a needs.way_in.tcp target",
            )

    for side in ("cpu", "memory"):
        req = _quantity(getattr(entry.resources.requests, side))
        lim = _quantity(getattr(entry.resources.limits, side))
        if req > lim:
            add(
                ("resources", "requests", side),
                f"request {getattr(entry.resources.requests, side)} is above the limit "
                f"{getattr(entry.resources.limits, side)}",
                "raise the limit or lower the request",
            )

    check_names: set[str] = set()
    for i, chk in enumerate(entry.checks):
        path = ("checks", i)
        if chk.name in check_names:
            add(
                (*path, "name"),
                f"check '{chk.name}' is listed twice",
                "give each check its own name",
            )
        check_names.add(chk.name)
        if (chk.http is None) == (chk.tcp is None):
            add(
                path,
                "a check is either http or tcp",
                "write one of http: {path, status} or tcp: {port}",
            )
        elif chk.http is not None and (needs.way_in is None or needs.way_in.https is None):
            add(
                (*path, "http"),
                "an http check needs needs.way_in.https",
                "declare needs.way_in.https",
            )
        elif chk.tcp is not None and chk.tcp.port not in tcp_names:
            add(
                (*path, "tcp", "port"),
                f"'{chk.tcp.port}' is not a port in needs.way_in.tcp ({', '.join(tcp_names) or 'none'})",
                "name one of needs.way_in.tcp",
            )
    ep_names = [e.name for e in entry.endpoints]
    for i, ep in enumerate(entry.endpoints):
        if ep_names.index(ep.name) != i or ep.name in tcp_names:
            add(
                ("endpoints", i, "name"),
                f"endpoint name '{ep.name}' is used twice",
                "give each endpoint its own name",
            )
    if entry.endpoints and (needs.way_in is None or needs.way_in.https is None):
        add(("endpoints",), "https endpoints need needs.way_in.https", "declare needs.way_in.https")

    for i, dep in enumerate(entry.depends_on):
        if dep == entry.name:
            add(("depends_on", i), "an entry cannot depend on itself", "remove it")
        elif dep not in names:
            add(
                ("depends_on", i),
                f"'{dep}' is not an entry of this bundle",
                f"use one of: {', '.join(sorted(names - {entry.name})) or 'none'}",
            )
    return out


def _quantity(text: str) -> float:
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    if text.endswith("Mi"):
        return int(text[:-2]) * 2**20
    if text.endswith("Gi"):
        return int(text[:-2]) * 2**30
    return float(text)


def _cycle_problems(entries: dict[str, LoadedEntry], loaded: dict[str, Loaded]) -> list[Problem]:
    # depends_on orders installs: a cycle has no order
    out: list[Problem] = []
    reported: set[str] = set()
    for start in entries:
        stack: list[tuple[str, tuple[str, ...]]] = [(start, (start,))]
        while stack:
            node, trail = stack.pop()
            deps = entries[node].entry.depends_on if node in entries else []
            for dep in deps:
                if dep == start and start not in reported and len(trail) > 1:
                    reported.update(trail)
                    le = entries[start]
                    out.append(
                        Problem(
                            le.file,
                            loaded[start].line_of(("depends_on",)),
                            "depends_on",
                            f"entries depend on each other in a cycle: {' -> '.join((*trail, start))}",
                            "break the cycle: one of them must start without the other",
                        )
                    )
                elif dep not in trail and dep in entries:
                    stack.append((dep, (*trail, dep)))
    return out


def bundle_for_site(site: Site, folder: Path | None = None) -> Bundle:
    """The bundle a site installs from: bundle.folder (relative to the site folder) or the default."""
    if site.bundle.folder is None:
        return load_bundle(default_bundle_dir())
    base = folder if folder is not None else Path.cwd()
    return load_bundle(base / site.bundle.folder)


def site_problems(site: Site, bundle: Bundle) -> list[tuple[KeyPath, str, str]]:
    """What is wrong with the site's bundle.services against the bundle it installs from."""
    out: list[tuple[KeyPath, str, str]] = []
    picked: list[LoadedEntry] = []
    for i, service in enumerate(site.bundle.services):
        entry_name = bundle.offers.get(service)
        if entry_name is None:
            out.append(
                (
                    ("bundle", "services", i),
                    f"unknown service '{service}': bundle {bundle.name} {bundle.version} does not offer it",
                    f"use one of: {bundle.known()}",
                )
            )
        elif bundle.entries[entry_name] not in picked:
            picked.append(bundle.entries[entry_name])
    services = site.services
    off = {
        "postgres": ("PostgreSQL", not services.postgres.enabled, "services.postgres"),
        "redis": ("Redis", not services.redis.enabled, "services.redis"),
        "s3": ("S3 (Ceph RGW)", not services.ceph.enabled, "services.ceph"),
    }
    for kind, (label, disabled, key) in off.items():
        users = [le for le in picked if getattr(le.entry.needs, kind) is not None]
        if disabled and users:
            names = ", ".join(s for le in users for s in le.offers if s in site.bundle.services)
            out.append(
                (
                    ("bundle", "services"),
                    f"{names} need{'s' if ',' not in names else ''} {label}, which is disabled",
                    f"enable {key} or remove {names} from bundle.services",
                )
            )
    return out


def entry_summary(bundle: Bundle, le: LoadedEntry, picked: set[str]) -> dict[str, Any]:
    return {
        "name": le.entry.name,
        "version": le.entry.version,
        "offers": list(le.offers),
        "picked": [s for s in le.offers if s in picked],
        "images": [i.ref for i in le.entry.images],
    }


def endpoints(entry: Entry) -> list[dict[str, Any]]:
    """What the entry exposes on the way in; host is a name under the site's domain."""
    way = entry.needs.way_in
    if way is None:
        return []
    out: list[dict[str, Any]] = []
    if way.https is not None:
        out.append({"name": "https", "scheme": "https", "host": way.host, "port": 443, "path": "/"})
        out += [
            {"name": e.name, "scheme": "https", "host": way.host, "port": 443, "path": e.path}
            for e in entry.endpoints
        ]
    out += [
        {"name": t.name, "scheme": "tcp", "host": way.host, "port": t.port, "path": None}
        for t in way.tcp
    ]
    return out


def entry_detail(le: LoadedEntry) -> dict[str, Any]:
    """Everything `bundle show` tells, as plain data (the --output json contract)."""
    e = le.entry
    return {
        "name": e.name,
        "version": e.version,
        "description": e.description,
        "file": le.file,
        "offers": list(le.offers),
        "images": [i.model_dump() for i in e.images],
        "needs": e.needs.model_dump(exclude_none=True),
        "endpoints": endpoints(e),
        "env": {
            k: {"value": v, "secret": any(r.secret for r in references(v)[0])}
            for k, v in e.env.items()
        },
        "config": [c.path for c in e.config],
        "probes": e.probes.model_dump(exclude_none=True),
        "resources": e.resources.model_dump(),
        "replicas": e.replicas,
        "depends_on": list(e.depends_on),
        "checks": [c.model_dump(exclude_none=True) for c in e.checks],
        "load": [ld.path for ld in e.load],
    }


# Installing: what a picked entry gets from the site.

# Where the installer mounts the site CA in every container (${site.ca_file}).
CA_FILE = "/etc/hzcloud/ca.crt"
# RGW has one zonegroup, "default"; the region only enters the S3 signature.
S3_REGION = "default"
# Pods reach the PaaS layer by the site's names, which the cluster DNS (platform phase) serves
# from the endpoint facts; False: by addresses from the plan. paas_hosts reads this one flag.
PAAS_BY_NAME = True


def picked(site: Site, bundle: Bundle) -> list[LoadedEntry]:
    """The entries the site's bundle.services pick, each once, in the order first picked."""
    out: list[LoadedEntry] = []
    for name in site.bundle.services:
        le = bundle.entry_for(name)
        if le is not None and le not in out:
            out.append(le)
    return out


def paas_hosts(site: Site, plan: Plan, by_name: bool = PAAS_BY_NAME) -> dict[str, str]:
    """The host for PostgreSQL, Redis and S3: a site name (pods), or an address of the plan
    (the nodes and the control node, which do not ask the cluster DNS)."""
    domain = site.hospital.site_domain
    if by_name:
        return {kind: f"{kind}.{domain}" for kind in ("postgres", "redis", "s3")}
    first = {
        role: plan.hosts(role)[0].address
        for role in ("postgres", "redis", "ceph-rgw")
        if plan.hosts(role)
    }
    vip = site.networks.postgres_vip
    return {
        # the VIP follows the Patroni leader; Redis: the first server (Sentinel clients come later)
        "postgres": str(vip) if vip is not None else first.get("postgres", ""),
        "redis": first.get("redis", ""),
        "s3": first.get("ceph-rgw", ""),
    }


def secret_key(entry: str, what: str) -> str:
    """The secrets.yaml key of one of an entry's credentials."""
    return f"bundle_{entry.replace('-', '_')}_{what}"


def secret_keys(entry: Entry) -> dict[str, str]:
    """Each secret reference the entry's needs make available -> its secrets.yaml key."""
    needs = entry.needs
    out: dict[str, str] = {}
    if needs.postgres is not None:
        out["needs.postgres.password"] = secret_key(entry.name, "postgres_password")
    if needs.redis is not None:
        out["needs.redis.password"] = secret_key(entry.name, "redis_password")
    if needs.s3 is not None:
        out["needs.s3.access_key"] = secret_key(entry.name, "s3_access_key")
        out["needs.s3.secret_key"] = secret_key(entry.name, "s3_secret_key")
    for name in needs.secrets:
        out[f"needs.secrets.{name}"] = secret_key(entry.name, f"secret_{name.replace('-', '_')}")
    return out


def values(
    site: Site, plan: Plan, entry: Entry, secrets: dict[str, str], ports: dict[str, int]
) -> dict[str, str]:
    """Every reference the entry may use -> its value (secrets from the site's secrets.yaml)."""
    from urllib.parse import quote

    hosts = paas_hosts(site, plan)
    out = {k: secrets[v] for k, v in secret_keys(entry).items()}
    out |= {
        "site.ca_file": CA_FILE,
        "site.code": site.hospital.code,
        "site.domain": site.hospital.site_domain,
    }
    needs = entry.needs
    if needs.postgres is not None:
        pg = needs.postgres
        host, port = hosts["postgres"], str(ports["postgres"])
        out |= {
            "needs.postgres.host": host,
            "needs.postgres.port": port,
            "needs.postgres.database": pg.database,
            "needs.postgres.user": pg.role,
            "needs.postgres.url": f"postgresql://{pg.role}:"
            f"{quote(out['needs.postgres.password'], safe='')}@{host}:{port}/{pg.database}"
            "?sslmode=require",
        }
    if needs.redis is not None:
        from hzcloud.phases.data import redis_master_name

        rd = needs.redis
        host, port = hosts["redis"], str(ports["redis"])
        sentinels = f"{host}:{ports['sentinel']}"  # the site name answers every Sentinel
        master = redis_master_name(plan.site)
        out |= {
            "needs.redis.host": host,
            "needs.redis.port": port,
            "needs.redis.sentinels": sentinels,
            "needs.redis.master": master,
            "needs.redis.user": rd.user,
            "needs.redis.prefix": rd.prefix,
            "needs.redis.url": f"redis+sentinel://{rd.user}:"
            f"{quote(out['needs.redis.password'], safe='')}@{sentinels}/{master}/0",
        }
    if needs.s3 is not None:
        out |= {
            "needs.s3.endpoint": f"http://{hosts['s3']}:{ports['s3']}",
            "needs.s3.region": S3_REGION,
            "needs.s3.bucket": needs.s3.bucket,
        }
    if needs.way_in is not None:
        out["needs.way_in.host"] = f"{needs.way_in.host}.{site.hospital.site_domain}"
    return out


def resolve(text: str, known: dict[str, str]) -> str:
    """text with every reference replaced by its value and `$${` by `${`."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        return known[m.group(1)]  # validated: every reference is known and declared

    return _REF.sub(one, text)


@dataclass(frozen=True)
class Rendered:
    """An entry with its references resolved, split by who may read each value."""

    config: dict[str, str]  # path -> content (a ConfigMap: nothing secret)
    env: dict[str, str]  # plain variables
    secret_env: dict[str, str]  # variables with a secret in them (a Kubernetes Secret)
    load: tuple[tuple[str, str], ...] = ()  # (path, JSON body) to PUT once the service is ready


def _resolve_all(value: Any, known: dict[str, str]) -> Any:
    """value (YAML data) with the references in every string resolved."""
    if isinstance(value, str):
        return resolve(value, known)
    if isinstance(value, list):
        return [_resolve_all(v, known) for v in value]
    if isinstance(value, dict):
        return {k: _resolve_all(v, known) for k, v in value.items()}
    return value


def render_entry(entry: Entry, known: dict[str, str]) -> Rendered:
    env: dict[str, str] = {}
    secret_env: dict[str, str] = {}
    for name, value in entry.env.items():
        refs, _ = references(value)
        (secret_env if any(r.secret for r in refs) else env)[name] = resolve(value, known)
    load = tuple(
        (ld.path, json.dumps(_resolve_all(ld.body, known), sort_keys=True)) for ld in entry.load
    )
    return Rendered(
        {c.path: resolve(c.content, known) for c in entry.config}, env, secret_env, load
    )
