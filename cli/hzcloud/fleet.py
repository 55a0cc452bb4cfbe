"""A fleet: many site folders rolled out from one fleet.yaml, in waves, each site on its own."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from hzcloud import journal
from hzcloud.errors import Problem, SiteError, UsageError
from hzcloud.model import (
    SITE_FILE,
    BundleService,
    Code,
    Site,
    TenantProvider,
    _field_problem,
    cross_field_problems,
)
from hzcloud.plan import Plan, plan_site
from hzcloud.siteyaml import KeyPath, Loaded, dotted, load_yaml, load_yaml_bytes

FLEET_FILE = "fleet.yaml"
STATE_DIR = "state"  # beside fleet.yaml: per-site logs of `fleet up`


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SharedSsh(_Model):
    user: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] | None = None
    key: Annotated[str, StringConstraints(min_length=1)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None


class SharedService(_Model):
    enabled: bool


class SharedServices(_Model):
    ceph: SharedService | None = None
    postgres: SharedService | None = None
    redis: SharedService | None = None
    kubernetes: SharedService | None = None


class Shared(_Model):
    """Settings every site of the fleet has in common (each is a key of site.yaml)."""

    ssh: SharedSsh = SharedSsh()
    mirror: AnyHttpUrl | None = None
    ntp: list[str] | None = None
    dns: list[IPv4Address] | None = None
    artifacts: Annotated[str, StringConstraints(min_length=1)] | None = None
    services: SharedServices = SharedServices()
    bundle: list[BundleService] | None = None
    tenant_provider: TenantProvider | None = None


class SiteEntry(_Model):
    folder: Annotated[str, StringConstraints(min_length=1)]
    template: Annotated[str, StringConstraints(min_length=1)] | None = None
    values: dict[str, Any] = {}


PhaseList = list[Annotated[str, StringConstraints(pattern=r"^[a-z]+$")]]


class WaveSpec(_Model):
    """One step of the rollout: a canary of N sites, batches of N until done, or named sites."""

    canary: Annotated[int, Field(ge=1)] | None = None
    batch: Annotated[int, Field(ge=1)] | None = None
    sites: list[str] | None = None
    phases: PhaseList | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> WaveSpec:
        given = [k for k in ("canary", "batch", "sites") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of canary: N, batch: N or sites: [...]")
        return self


class Policy(_Model):
    waves: list[WaveSpec] = [WaveSpec(batch=1)]
    # More failed sites than this and no further site starts (the running ones finish).
    max_failures: Annotated[int, Field(ge=0)] = 0
    # Sites of one wave that run at the same time.
    parallel: Annotated[int, Field(ge=1, le=64)] = 4
    phases: PhaseList | None = None


class FleetFile(_Model):
    fleet: Code
    shared: Shared = Shared()
    sites: Annotated[list[str | SiteEntry], Field(min_length=1)]
    policy: Policy = Policy()


@dataclass(frozen=True)
class FleetSite:
    folder: str  # as written in fleet.yaml: how the fleet names the site
    path: Path
    code: str
    wave: int
    phases: tuple[str, ...] | None  # None: every phase of the site's plan
    plan_phases: tuple[str, ...]
    plan_digest: str
    generated: str | None = None  # site.yaml text made from a template, written by `up`


@dataclass(frozen=True)
class Wave:
    number: int
    sites: tuple[str, ...]
    phases: tuple[str, ...] | None


@dataclass(frozen=True)
class Fleet:
    name: str
    file: Path
    sites: tuple[FleetSite, ...]
    waves: tuple[Wave, ...]
    max_failures: int
    parallel: int

    def site(self, folder: str) -> FleetSite:
        return next(s for s in self.sites if s.folder == folder)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sites": [{"site": s.folder, "wave": s.wave} for s in self.sites],
            "waves": [
                {
                    "wave": w.number,
                    "sites": list(w.sites),
                    "phases": list(w.phases) if w.phases is not None else None,
                }
                for w in self.waves
            ],
        }


def fleet_file(path: Path) -> Path:
    return path / FLEET_FILE if path.is_dir() else path


class _Where:
    """Lines of one YAML file, for problems placed at a key path (or the nearest parent)."""

    def __init__(self, name: str, loaded: Loaded, base: KeyPath = ()) -> None:
        self.name, self.loaded, self.base = name, loaded, base

    def line(self, path: KeyPath) -> int | None:
        return self.loaded.line_of((*self.base, *path))

    def has(self, path: KeyPath) -> bool:
        return (*self.base, *path) in self.loaded.lines

    def problem(self, path: KeyPath, what: str, fix: str) -> Problem:
        return Problem(self.name, self.line(path), dotted((*self.base, *path)), what, fix)


def load_fleet(path: Path) -> Fleet:
    """Load and validate fleet.yaml and every site it names; SiteError lists every problem."""
    file = fleet_file(path)
    loaded = load_yaml(file)
    name = file.name
    here = _Where(name, loaded)
    try:
        spec = FleetFile.model_validate(loaded.data)
    except ValidationError as exc:
        found: list[Problem] = []
        for err in exc.errors():
            problem = _fleet_field_problem(err, loaded, name)
            if problem is not None and problem not in found:
                found.append(problem)
        raise SiteError(found) from None
    base = file.parent
    problems: list[Problem] = []
    entries = [SiteEntry(folder=e) if isinstance(e, str) else e for e in spec.sites]
    sites: list[tuple[str, Site, str | None]] = []
    for i, entry in enumerate(entries):
        where = ("sites", i) if isinstance(spec.sites[i], str) else ("sites", i, "folder")
        if entry.folder in [e.folder for e in entries[:i]]:
            problems.append(
                here.problem(where, f"site {entry.folder} is listed twice", "list it once")
            )
            continue
        got = _load_entry(base, entry, spec.shared, here, i, problems)
        if got is not None:
            sites.append((entry.folder, *got))
    codes: dict[str, str] = {}
    for folder, site, _ in sites:
        other = codes.setdefault(site.hospital.code, folder)
        if other != folder:
            i = [e.folder for e in entries].index(folder)
            problems.append(
                here.problem(
                    ("sites", i),
                    f"site {folder} has hospital.code {site.hospital.code}, as {other} has",
                    "give every hospital of the fleet its own code",
                )
            )
    plans = {folder: plan_site(site) for folder, site, _ in sites}
    folders = list(dict.fromkeys(e.folder for e in entries))
    waves = _waves(spec.policy, folders, here, problems)
    missing: dict[tuple[KeyPath, str], list[str]] = {}
    for w in waves:
        for folder in w.sites:
            plan = plans.get(folder)
            if plan is None or w.phases is None:
                continue
            names = [p.name for p in plan.phases]
            for phase in w.phases:
                if phase not in names:
                    missing.setdefault((_phases_key(spec.policy, w.number), phase), []).append(
                        folder
                    )
    for (key, phase), folders in missing.items():
        names = [p.name for p in plans[folders[0]].phases]
        problems.append(
            here.problem(
                key,
                f"phase {phase} is not in the plan of site {', '.join(folders)}",
                f"choose from: {', '.join(names)} (a switched-off service has no phase)",
            )
        )
    if problems:
        raise SiteError(problems)
    wave_of = {folder: w for w in waves for folder in w.sites}
    return Fleet(
        spec.fleet,
        file.resolve(),
        tuple(
            FleetSite(
                folder,
                (base / folder).resolve(),
                site.hospital.code,
                wave_of[folder].number,
                wave_of[folder].phases,
                tuple(p.name for p in plans[folder].phases),
                plan_digest(plans[folder]),
                generated,
            )
            for folder, site, generated in sites
        ),
        tuple(waves),
        spec.policy.max_failures,
        spec.policy.parallel,
    )


def plan_digest(plan: Plan) -> str:
    """The digest `hzcloud up` writes into the journal: what was done counts for this plan only."""
    from hzcloud.engine import plan_hash

    return plan_hash(plan)


_FLEET_FIXES = {
    "extra_forbidden": "remove it, or check its spelling against inventories/lab-fleet/fleet.yaml",
}


def _fleet_field_problem(err: Any, loaded: Loaded, name: str) -> Problem | None:
    loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
    if len(loc) >= 3 and loc[0] == "sites" and loc[2] in ("str", "SiteEntry"):
        # A site entry is a folder name or a mapping: pydantic reports both tries.
        given = err.get("input")
        if loc[2] == "str" and isinstance(given, dict):
            return None  # a mapping: its own problems say what is wrong
        if not isinstance(given, dict | str):
            return _Where(name, loaded).problem(
                loc[:2],
                f"expected a site folder or a mapping with folder: (got {given!r})",
                "write `- FOLDER`, or `- {folder: FOLDER, template: FILE, values: {...}}`",
            )
        loc = loc[:2] + loc[3:]
    err = {**err, "loc": loc}
    problem = _field_problem(err, loaded, name)
    if err["type"] == "value_error":
        problem = replace(problem, what=str(err["msg"]).removeprefix("Value error, "))
        problem = replace(problem, fix="see the policy in inventories/lab-fleet/fleet.yaml")
    return replace(problem, fix=_FLEET_FIXES.get(err["type"], problem.fix))


def _phases_key(policy: Policy, number: int) -> KeyPath:
    # Waves made by `batch` repeat its spec: point at the spec that made the wave.
    index = min(number - 1, len(policy.waves) - 1)
    spec = policy.waves[index]
    return ("policy", "waves", index, "phases") if spec.phases is not None else ("policy", "phases")


def _waves(policy: Policy, folders: list[str], here: _Where, problems: list[Problem]) -> list[Wave]:
    """Cut the sites, in the order listed, into the policy's waves."""
    left = list(folders)
    waves: list[Wave] = []
    for i, spec in enumerate(policy.waves):
        raw = spec.phases if spec.phases is not None else policy.phases
        phases = tuple(raw) if raw is not None else None
        if spec.batch is not None and i != len(policy.waves) - 1:
            problems.append(
                here.problem(
                    ("policy", "waves", i, "batch"),
                    "batch repeats until every site has a wave: it must be the last wave",
                    "move it to the end, or write canary: N for a wave of N sites",
                )
            )
            return waves
        if spec.sites is not None:
            taken = []
            for j, folder in enumerate(spec.sites):
                if folder not in folders:
                    problems.append(
                        here.problem(
                            ("policy", "waves", i, "sites", j),
                            f"no site {folder} in sites:",
                            f"name one of: {', '.join(folders)}",
                        )
                    )
                elif folder not in left:
                    problems.append(
                        here.problem(
                            ("policy", "waves", i, "sites", j),
                            f"site {folder} is already in an earlier wave",
                            "put every site in one wave",
                        )
                    )
                else:
                    left.remove(folder)
                    taken.append(folder)
            if taken:
                waves.append(Wave(len(waves) + 1, tuple(taken), phases))
        elif spec.canary is not None:
            taken, left = left[: spec.canary], left[spec.canary :]
            if taken:
                waves.append(Wave(len(waves) + 1, tuple(taken), phases))
        elif spec.batch is not None:
            while left:
                taken, left = left[: spec.batch], left[spec.batch :]
                waves.append(Wave(len(waves) + 1, tuple(taken), phases))
    if left:
        problems.append(
            here.problem(
                ("policy", "waves"),
                f"site{'s' if len(left) > 1 else ''} {', '.join(left)} in no wave",
                "end the waves with batch: N, or name every site in sites: [...]",
            )
        )
    return waves


# Where each shared setting sits in site.yaml; "*" stands for every item of a list.
_SHARED_KEYS: dict[str, KeyPath] = {
    "ssh.user": ("ssh", "user"),
    "ssh.key": ("ssh", "key"),
    "ssh.port": ("ssh", "port"),
    "mirror": ("networks", "mirror"),
    "ntp": ("networks", "ntp"),
    "dns": ("networks", "dns"),
    "artifacts": ("artifacts",),
    "services.ceph.enabled": ("services", "ceph", "enabled"),
    "services.postgres.enabled": ("services", "postgres", "enabled"),
    "services.redis.enabled": ("services", "redis", "enabled"),
    "services.kubernetes.enabled": ("services", "kubernetes", "enabled"),
    "bundle": ("bundle", "services"),
    "tenant_provider": ("cloud", "tenants", "*", "provider"),
}


def shared_settings(shared: Shared) -> list[tuple[str, KeyPath, Any]]:
    """The shared settings that are set: (fleet.yaml key, site.yaml key path, plain value)."""
    data = shared.model_dump(mode="json", exclude_none=True)
    out = []
    for key, path in _SHARED_KEYS.items():
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out.append((key, path, value))
    return out


def _get(data: Any, path: KeyPath) -> list[tuple[KeyPath, Any]]:
    """The values at a key path ("*" fans out over a list); missing keys give nothing."""
    if not path:
        return [((), data)]
    head, rest = path[0], path[1:]
    if head == "*":
        items = list(enumerate(data)) if isinstance(data, list) else []
        return [((i, *p), v) for i, item in items for p, v in _get(item, rest)]
    if isinstance(data, dict) and head in data:
        return [((head, *p), v) for p, v in _get(data[head], rest)]
    return []


def _set(data: dict[str, Any], path: KeyPath, value: Any) -> None:
    """Set a key path in plain data, making mappings on the way ("*": every item of a list)."""
    head, rest = path[0], path[1:]
    if head == "*":
        return  # handled by the caller over the list
    if rest and rest[0] == "*":
        for item in data.get(str(head)) or []:
            if isinstance(item, dict):
                _set(item, rest[1:], value)
        return
    if not rest:
        data[str(head)] = value
        return
    child = data.setdefault(str(head), {})
    if isinstance(child, dict):
        _set(child, rest, value)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_entry(
    base: Path,
    entry: SiteEntry,
    shared: Shared,
    here: _Where,
    i: int,
    problems: list[Problem],
) -> tuple[Site, str | None] | None:
    """One site of the fleet, validated: (site, generated site.yaml text or None)."""
    folder = base / entry.folder
    if entry.template is None:
        if entry.values:
            problems.append(
                here.problem(
                    ("sites", i, "values"),
                    "values without a template",
                    "add template: FILE, or write these keys into the site's own site.yaml",
                )
            )
        file = folder / SITE_FILE
        if not file.is_file():
            problems.append(
                here.problem(
                    ("sites", i),
                    f"{file} does not exist",
                    f"create it (hzcloud init {entry.folder}), or give a template: and values:",
                )
            )
            return None
        name = str(Path(entry.folder) / SITE_FILE)
        try:
            loaded = load_yaml_bytes(file.read_bytes(), name)
        except SiteError as exc:
            problems.extend(exc.problems)
            return None
        site = _validate(loaded.data, lambda path: _Where(name, loaded), problems)
        if site is None:
            return None
        # The folder must hold the site's whole intent (plain `hzcloud up` of it does what the
        # fleet does): a shared setting it contradicts is a problem, not a silent override.
        dumped = site.model_dump(mode="json")
        where = _Where(name, loaded)
        for key, path, want in shared_settings(shared):
            for at, have in _get(dumped, path):
                if have != want:
                    problems.append(
                        where.problem(
                            at,
                            f"is {_shown(have)}; fleet.yaml shared.{key} says {_shown(want)}",
                            f"write {dotted(at)}: {_shown(want)} into {name}, "
                            f"or remove shared.{key} from fleet.yaml",
                        )
                    )
        return site, None
    template = base / entry.template
    try:
        tpl = load_yaml(template)
    except SiteError as exc:
        problems.extend(replace(p, file=str(Path(entry.template))) for p in exc.problems)
        return None
    data = copy.deepcopy(tpl.data)
    for _, path, value in shared_settings(shared):
        _set(data, path, value)
    data = _merge(data, entry.values)
    values_at = _Where(here.name, here.loaded, ("sites", i, "values"))
    tpl_at = _Where(entry.template, tpl)

    def where_for(path: KeyPath) -> _Where:
        # Blame the value where it was written: the site's values, else the template.
        for n in range(len(path), 0, -1):
            if values_at.has(path[:n]):
                return values_at
            if tpl_at.has(path[:n]):
                return tpl_at
        return values_at if entry.values else tpl_at

    site = _validate(data, where_for, problems)
    if site is None:
        return None
    text = (
        f"# Written by `hzcloud fleet` from {here.name} ({entry.template} + sites[{i}].values).\n"
        "# Edit those, not this file: the next `hzcloud fleet up` writes it again.\n"
        + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    )
    return site, text


def _validate(
    data: dict[str, Any], where_for: Callable[[KeyPath], _Where], problems: list[Problem]
) -> Site | None:
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            path: KeyPath = tuple(p for p in err["loc"] if isinstance(p, str | int))
            where = where_for(path)
            shape = _field_problem(err, Loaded({}, {}), where.name)
            problems.append(where.problem(path, shape.what, shape.fix))
        return None
    found = [
        where_for(path).problem(path, what, fix) for path, what, fix in cross_field_problems(site)
    ]
    problems.extend(found)
    return None if found else site


def _shown(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


# --- rollout -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetEvent:
    site: str
    message: str
    level: str = "info"  # info | warning


@dataclass(frozen=True)
class SiteResult:
    site: str
    wave: int
    status: str  # ok | failed | done (completed before: not run) | held (rollout stopped)
    seconds: float = 0.0
    failed_phase: str = ""
    error: str = ""
    log: str = ""


@dataclass(frozen=True)
class FleetResult:
    sites: tuple[SiteResult, ...]
    seconds: float
    stopped: bool  # max_failures was passed: later sites were held

    @property
    def ok(self) -> bool:
        return all(s.status in ("ok", "done") for s in self.sites)

    @property
    def failed(self) -> tuple[SiteResult, ...]:
        return tuple(s for s in self.sites if s.status == "failed")


OnFleetEvent = Callable[[FleetEvent], None]


def wanted_phases(site: FleetSite, only: list[str] | None) -> tuple[str, ...]:
    if only is not None:
        return tuple(p for p in site.plan_phases if p in only)
    return site.phases if site.phases is not None else site.plan_phases


def check_only(fleet: Fleet, only: list[str] | None) -> None:
    """Refuse --only phases that some site's plan does not have (exit 2, nothing touched)."""
    if only is None:
        return
    for site in fleet.sites:
        unknown = [p for p in only if p not in site.plan_phases]
        if unknown:
            raise UsageError(
                f"unknown phase {', '.join(unknown)} for site {site.folder}",
                "every site of the fleet runs the phases given with --only",
                f"choose from: {', '.join(site.plan_phases)}",
            )


def is_done(site: FleetSite, phases: tuple[str, ...]) -> bool:
    """Whether the site's journal says its last up completed these phases on today's plan."""
    latest = journal.latest(site.path / "state")
    return all(
        p in latest
        and latest[p].status in ("ok", "skipped")
        and latest[p].plan_hash == site.plan_digest
        for p in phases
    )


def write_generated(fleet: Fleet) -> list[Path]:
    """Write the site.yaml of every template site whose text changed; the paths written."""
    written = []
    for site in fleet.sites:
        if site.generated is None:
            continue
        file = site.path / SITE_FILE
        if file.exists() and file.read_text() == site.generated:
            continue
        site.path.mkdir(parents=True, exist_ok=True)
        file.write_text(site.generated)
        written.append(file)
    return written


def _log_dir(fleet: Fleet) -> Path:
    return fleet.file.parent / STATE_DIR / "logs"


# the sites' `hzcloud up` processes running now (a stop is passed on to them)
_RUNNING: set[subprocess.Popen[str]] = set()
_RUNNING_LOCK = threading.Lock()


def _stop_sites() -> None:
    """Ctrl-C, SIGINT or SIGTERM: each running site's `up` stops as its own Ctrl-C stops it
    (the journal marks what did not finish; `fleet up` resumes). A terminal's Ctrl-C reached
    them already; else they get SIGTERM (a background job's `up` ignores SIGINT)."""
    from hzcloud.executors import reached_by_terminal

    if reached_by_terminal():
        return
    with _RUNNING_LOCK:
        for proc in _RUNNING:
            proc.send_signal(signal.SIGTERM)


def _run_site(fleet: Fleet, site: FleetSite, phases: tuple[str, ...]) -> SiteResult:
    """`hzcloud up SITE --output json --only PHASES` in its own process: its own journal and resume."""
    started = time.monotonic()
    logs = _log_dir(fleet)
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{site.code}.log"
    argv = [sys.executable, "-m", "hzcloud", "up", str(site.path), "--output", "json"]
    argv += ["--only", ",".join(phases)]
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    ) as proc:
        with _RUNNING_LOCK:
            _RUNNING.add(proc)
        try:
            stdout, stderr = proc.communicate()
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(proc)
    log.write_text(f"$ {' '.join(argv)}\n# exit {proc.returncode}\n{stdout}\n{stderr}")
    seconds = time.monotonic() - started
    if proc.returncode == 0:
        return SiteResult(site.folder, site.wave, "ok", seconds, log=str(log))
    phase, error = _failure(site, stdout, stderr)
    return SiteResult(site.folder, site.wave, "failed", seconds, phase, error, str(log))


def _failure(site: FleetSite, stdout: str, stderr: str) -> tuple[str, str]:
    """The failed phase and why, from the summary `up` printed, else from the site's journal."""
    try:
        summary = json.loads(stdout)
    except ValueError:
        summary = {}
    for phase in summary.get("phases", []) if isinstance(summary, dict) else []:
        if phase.get("status") == "failed":
            err = phase.get("error") or {}
            detail = " ".join(str(err.get(k)) for k in ("host", "task", "message") if err.get(k))
            return str(phase.get("name", "")), detail
    for rec in journal.last_run(site.path / "state"):
        if rec.status == "failed":
            return rec.phase, " ".join(str(v) for v in rec.error.values())
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return "", " ".join(lines[:3]) or "hzcloud up failed without a message"


def up(
    fleet: Fleet, only: list[str] | None = None, on_event: OnFleetEvent | None = None
) -> FleetResult:
    """Roll the fleet out wave by wave; a site whose last up completed is not run again."""
    check_only(fleet, only)
    started = time.monotonic()
    lock = threading.Lock()

    def emit(event: FleetEvent) -> None:
        if on_event is not None:
            with lock:
                on_event(event)

    write_generated(fleet)
    results: dict[str, SiteResult] = {}
    failures = [0]

    def one(site: FleetSite) -> SiteResult:
        phases = wanted_phases(site, only)
        with lock:
            held = failures[0] > fleet.max_failures
        if held:
            return SiteResult(site.folder, site.wave, "held", error="the rollout stopped")
        if is_done(site, phases):
            emit(FleetEvent(site.folder, f"done before ({','.join(phases)}): not run again"))
            return SiteResult(site.folder, site.wave, "done")
        emit(FleetEvent(site.folder, f"up --only {','.join(phases)}"))
        result = _run_site(fleet, site, phases)
        if result.status == "failed":
            with lock:
                failures[0] += 1
            where = f" at {result.failed_phase}" if result.failed_phase else ""
            emit(FleetEvent(site.folder, f"FAILED{where}: {result.error}", "warning"))
        else:
            emit(FleetEvent(site.folder, f"ok in {result.seconds:.0f} s"))
        return result

    stopped = False
    for wave in fleet.waves:
        sites = [fleet.site(f) for f in wave.sites]
        if failures[0] > fleet.max_failures:
            stopped = True
            for s in sites:
                results[s.folder] = SiteResult(
                    s.folder, s.wave, "held", error="the rollout stopped"
                )
            continue
        emit(FleetEvent(f"wave {wave.number}", ", ".join(wave.sites)))
        with ThreadPoolExecutor(max_workers=min(fleet.parallel, len(sites))) as pool:
            try:
                for result in pool.map(one, sites):
                    results[result.site] = result
            except KeyboardInterrupt:  # no further wave; the sites' own `up` stop
                _stop_sites()
                raise
        stopped |= failures[0] > fleet.max_failures
    ordered = tuple(results[s.folder] for s in fleet.sites)
    return FleetResult(ordered, time.monotonic() - started, stopped)


def preview(
    fleet: Fleet, only: list[str] | None = None
) -> list[tuple[FleetSite, tuple[str, ...], bool]]:
    """What `up` would do, touching nothing: (site, phases, done before) in rollout order."""
    check_only(fleet, only)
    return [
        (site, phases, is_done(site, phases))
        for wave in fleet.waves
        for site in (fleet.site(f) for f in wave.sites)
        for phases in [wanted_phases(site, only)]
    ]


# --- status and JUnit ------------------------------------------------------------------


def phase_dicts(records: list[journal.PhaseRecord]) -> list[dict[str, Any]]:
    """The phases as `hzcloud status SITE --output json` lists them (a test holds them equal)."""
    return [journal.status_view(r) for r in records]


def site_status(site: FleetSite) -> tuple[str, list[journal.PhaseRecord]]:
    """pending | running | failed | done | partial, and the phases, from the site's journal."""
    latest = journal.latest(site.path / "state")
    records = sorted(latest.values(), key=lambda r: r.started)
    if not records:
        return "pending", records
    statuses = {r.status for r in records}
    if "running" in statuses:
        return "running", records
    if "failed" in statuses:
        return "failed", records
    return ("done" if is_done(site, wanted_phases(site, None)) else "partial"), records


def status(fleet: Fleet) -> list[dict[str, Any]]:
    out = []
    for site in fleet.sites:
        state, records = site_status(site)
        out.append(
            {
                "site": site.folder,
                "wave": site.wave,
                "status": state,
                "phases": phase_dicts(records),
            }
        )
    return out


def write_junit(fleet: Fleet, directory: Path, only: list[str] | None = None) -> list[Path]:
    """One JUnit file per site, a testcase per phase it was to run, from its journal."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for site in fleet.sites:
        latest = journal.latest(site.path / "state")
        suite = ET.Element("testsuite", name=f"{fleet.name}.{site.folder}")
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        total = 0.0
        for phase in wanted_phases(site, only):
            rec = latest.get(phase)
            seconds = rec.seconds if rec else 0.0
            total += seconds
            case = ET.SubElement(
                suite, "testcase", classname=f"{fleet.name}.{site.folder}", name=phase,
                time=f"{seconds:.2f}",
            )  # fmt: skip
            counts["tests"] += 1
            if rec is None or rec.status == "running":
                ET.SubElement(case, "skipped", message="not run")
                counts["skipped"] += 1
            elif rec.status == "failed":
                message = " ".join(str(v) for v in rec.error.values()) or "failed"
                ET.SubElement(case, "failure", message=message).text = message
                counts["failures"] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
        suite.set("time", f"{total:.2f}")
        path = directory / f"{site.code}.xml"
        ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
        written.append(path)
    return written
