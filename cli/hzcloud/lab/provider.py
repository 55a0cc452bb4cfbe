"""The lab provider: up, down, status and ssh_argv for a site folder."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hzcloud.errors import HzError
from hzcloud.lab import image, net, node, proxy
from hzcloud.lab import spec as spec_names
from hzcloud.lab import tenant as lab_tenant
from hzcloud.lab.errors import LabError, LabUsageError
from hzcloud.lab.spec import LabSpec, load_spec
from hzcloud.lab.state import LabState
from hzcloud.lab.system import (
    cgroup_roots,
    check_host,
    find_pids,
    link_exists,
    mounts_under,
    pid_alive,
    remove_cgroups,
    run,
)
from hzcloud.resources import resource

WORK_ROOT = Path("/var/lib/hzcloud/lab")


@dataclass(frozen=True)
class LabEvent:
    """One line of progress: what (subject) did what (message)."""

    subject: str
    message: str
    changed: bool = False
    seconds: float | None = None
    level: str = "info"  # info | warning


@dataclass(frozen=True)
class NodeStatus:
    name: str
    address: str
    state: str  # running | cut (running, off the network: `lab cut`) | stopped


@dataclass(frozen=True)
class LabResult:
    changed: bool
    seconds: float
    nodes: tuple[NodeStatus, ...] = ()


OnEvent = Callable[[LabEvent], None]


@dataclass(frozen=True)
class _Names:
    """Host-side names of one lab's bridges, namespace and folders."""

    site: Path
    spec: LabSpec
    # The bridges and tenant namespace a running lab was made with, when they differ from
    # today's names (made before names carried a digest): kept until its `lab down`.
    recorded: tuple[str, str, str] = ("", "", "")

    @property
    def workdir(self) -> Path:
        digest = hashlib.sha256(str(self.site).encode()).hexdigest()[:8]
        return WORK_ROOT / f"{self.spec.code}-{digest}"

    @property
    def bridge(self) -> str:
        return self.recorded[0] or spec_names.bridge_name(self.spec.code)

    @property
    def cloud_bridge(self) -> str:
        return self.recorded[1] or spec_names.cloud_bridge_name(self.spec.code)

    @property
    def tenant_netns(self) -> str:
        tenant = self.spec.tenant.name if self.spec.tenant else "cloud"
        return self.recorded[2] or spec_names.tenant_netns_name(self.spec.code, tenant)

    @property
    def tenant_veth(self) -> str:
        # Same name as the namespace: links and namespaces do not share a name space.
        return self.tenant_netns

    @property
    def state_dir(self) -> Path:
        return self.site / "state" / "lab"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.spec.bridge_address}:{proxy.PORT}"

    def node_dir(self, name: str) -> Path:
        return self.workdir / "nodes" / name

    def host_key_dir(self, name: str) -> Path:
        return self.state_dir / "hostkeys" / name

    def node_needle(self, name: str) -> str:
        return _node_needle(self.workdir, name)


def _node_needle(workdir: Path, name: str) -> str:
    """What only this node's nspawn has on its command line."""
    return f"--directory={workdir / 'nodes' / name / 'root'}"


def _serialised(on_event: OnEvent | None) -> OnEvent:
    lock = threading.Lock()

    def emit(event: LabEvent) -> None:
        if on_event is not None:
            with lock:
                on_event(event)

    return emit


def _template() -> Path:
    try:
        return resource("inventories") / "lab" / "site.yaml"
    except FileNotFoundError as exc:
        raise LabError(
            "the lab's site.yaml template is missing",
            cause=str(exc),
            fix="reinstall hzcloud, or copy inventories/lab/site.yaml into the site folder",
        ) from exc


def _load(site_dir: Path) -> tuple[_Names, LabState]:
    site = site_dir.resolve()
    site_yaml = site / "site.yaml"
    if not site_yaml.exists():
        raise LabUsageError(
            f"no lab at {site}",
            cause=f"{site_yaml} does not exist",
            fix=f"hzcloud lab up --site {site_dir}",
        )
    names = _Names(site, load_spec(site_yaml))
    state = LabState(site / "state" / "lab" / "lab.json")
    bridge = state.get("bridge")
    if bridge and bridge != names.bridge and net.owner_of(bridge) == str(names.workdir):
        tenant = state.get("tenant") or {}
        recorded = (bridge, state.get("cloud_bridge") or "", tenant.get("netns") or "")
        names = _Names(site, names.spec, recorded)
    return names, state


def _cloud_address(spec: LabSpec) -> str | None:
    """The gateway's address on the cloud bridge: same last octet as on the management net."""
    if spec.tenant is None or spec.gateway is None:
        return None
    net = lab_tenant.tenant_net(spec)
    return f"{net.gateway_public}/{net.public.prefixlen}"


CLAIM_FILE = "claim.json"


def _claim_at(workdir: Path) -> spec_names.LabClaim | None:
    """What another lab holds, from its work folder (or its site, for a lab made before claims)."""
    try:
        return spec_names.LabClaim.from_dict(json.loads((workdir / CLAIM_FILE).read_text()))
    except (OSError, ValueError, KeyError):
        pass
    try:
        site = Path((workdir / "site").read_text().strip())
        return spec_names.claim_of(site, load_spec(site / "site.yaml"))
    except (OSError, HzError):
        return None  # its site is gone: only its links (by owner, below) can still be in the way


def _refuse_clashes(names: _Names, emit: OnEvent) -> None:
    """Refuse a lab that would share a name or a network with a running one; clear stopped ones."""
    mine = spec_names.claim_of(names.site, names.spec)
    for workdir in sorted(WORK_ROOT.glob("*/site")):
        workdir = workdir.parent
        theirs = _claim_at(workdir)
        if workdir == names.workdir or theirs is None:
            continue
        reasons = spec_names.clashes(mine, theirs)
        if not reasons:
            continue
        if find_pids(f"{workdir}/"):
            raise spec_names.clash_error(mine, theirs, reasons)
        emit(
            LabEvent(
                "lab", f"removing the remains of a stopped lab from {theirs.site}", level="warning"
            )
        )
        tenant = (theirs.netns, theirs.netns)  # the tenant's veth is named like its namespace
        _teardown(workdir, list(theirs.machines), {}, None, list(theirs.links), tenant, emit)


def _reclaim(names: _Names, state: LabState, emit: OnEvent) -> None:
    """Take the bridges back from a lab that is gone but left its links and mounts behind."""
    _refuse_clashes(names, emit)
    if state.get("bridge") == names.bridge or not link_exists(names.bridge):
        return
    owners = [p.parent for p in WORK_ROOT.glob("*/site") if p.parent != names.workdir]
    for workdir in owners:
        if find_pids(f"{workdir}/"):
            other = (workdir / "site").read_text().strip()
            raise LabError(
                f"bridge {names.bridge} belongs to another lab",
                cause=f"a lab is up from {other}",
                fix=f"hzcloud lab down --site {other}",
            )
    for workdir in owners:
        other = (workdir / "site").read_text().strip()
        emit(
            LabEvent("lab", f"removing the remains of a stopped lab from {other}", level="warning")
        )
        nodes = sorted(p.name for p in (workdir / "nodes").glob("*"))
        _teardown(workdir, nodes, {}, None, [], ("", ""), lambda _: None)
    # No lab that could own them runs: whoever made these links, they are stale.
    net.delete_tenant(names.tenant_netns, names.tenant_veth, None)
    for name in (names.bridge, names.cloud_bridge):
        net.delete_link(name, None)


def up(site_dir: Path, on_event: OnEvent | None = None) -> LabResult:
    """Make the site's servers real on this host; a re-run changes nothing."""
    with _exclusive():
        return _up(site_dir, on_event)


def down(site_dir: Path, on_event: OnEvent | None = None) -> LabResult:
    """Remove every machine, link, mount, loop device and process of the lab (caches stay)."""
    with _exclusive():
        return _down(site_dir, on_event)


@contextmanager
def _exclusive() -> Iterator[None]:
    """One `up` or `down` at a time on this host: they share bridges, loop devices and cgroups."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    with open(WORK_ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _up(site_dir: Path, on_event: OnEvent | None) -> LabResult:
    started = time.monotonic()
    emit = _serialised(on_event)
    check_host()
    site = site_dir.resolve()
    site.mkdir(parents=True, exist_ok=True)
    changed = False
    if not (site / "site.yaml").exists():
        shutil.copyfile(_template(), site / "site.yaml")
        emit(LabEvent("site", f"wrote {site / 'site.yaml'}", changed=True))
        changed = True
    names, state = _load(site)
    _reclaim(names, state, emit)
    names.workdir.mkdir(parents=True, exist_ok=True)
    (names.workdir / "site").write_text(f"{site}\n")
    claim = spec_names.claim_of(site, names.spec).to_dict()
    (names.workdir / CLAIM_FILE).write_text(json.dumps(claim, indent=2) + "\n")
    state.set("workdir", str(names.workdir))

    changed |= _ensure_keys(names, emit)
    archive, security = image.host_mirrors()
    changed |= _ensure_network(names, state, emit)
    changed |= _ensure_proxy(names, state, archive, security, emit)
    step = time.monotonic()
    recipe = image.recipe(archive, security)
    if image.cached_image(recipe) is None:
        emit(LabEvent("image", "building the Debian 12 base image (a minute or two, once)"))
    # Through the proxy: a rebuild (new recipe) finds the packages in its cache.
    base, built = image.ensure_image(recipe, proxy=names.proxy_url)
    verb = "built" if built else "cached"
    emit(LabEvent("image", f"{verb} {base.parent.name}", built, time.monotonic() - step))
    changed |= built
    changed |= _boot_nodes(names, state, base, emit)

    seconds = time.monotonic() - started
    count = len(names.spec.servers)
    message = f"{count} nodes up" if changed else "already up: nothing changed"
    emit(LabEvent("lab", message, changed=changed, seconds=seconds))
    return LabResult(changed=changed, seconds=seconds, nodes=status(site).nodes)


def _ensure_keys(names: _Names, emit: OnEvent) -> bool:
    """The lab's SSH key and every node's host key, pinned in state/known_hosts; changed?"""
    changed = False
    key = names.site / names.spec.ssh_key
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        comment = f"hzcloud-lab-{names.spec.code}"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
        emit(LabEvent("keys", f"made the lab's SSH key {key}", changed=True))
        changed = True
    key.chmod(0o600)
    known = "".join(
        f"{s.name},{s.address} {node.host_key(names.host_key_dir(s.name))}\n"
        for s in names.spec.servers
    )
    known_hosts = names.site / "state" / "known_hosts"
    if not known_hosts.exists() or known_hosts.read_text() != known:
        known_hosts.write_text(known)
        emit(LabEvent("keys", f"recorded host keys in {known_hosts}", changed=True))
        changed = True
    return changed


def _ensure_network(names: _Names, state: LabState, emit: OnEvent) -> bool:
    """The management bridge, and the cloud bridge with the tenant's namespace; changed?"""
    step = time.monotonic()
    spec, owner = names.spec, str(names.workdir)
    address = f"{spec.bridge_address}/{spec.prefix_length}"
    changed = net.ensure_bridge(names.bridge, owner, address)
    state.set("bridge", names.bridge)
    message = f"bridges {names.bridge} ({spec.bridge_address})"
    if spec.tenant is not None:
        cloud = lab_tenant.tenant_net(spec)
        prefix = cloud.public.prefixlen
        # the host's address there is the operator's way to the tenant's API
        changed |= net.ensure_bridge(names.cloud_bridge, owner, f"{cloud.host}/{prefix}")
        state.set("cloud_bridge", names.cloud_bridge)
        endpoint = f"{spec.tenant.endpoint}/{prefix}"
        changed |= net.ensure_tenant(
            names.tenant_netns, names.tenant_veth, names.cloud_bridge, endpoint, owner
        )
        recorded = state.get("tenant") or {}
        made, record = lab_tenant.ensure(
            names.site, spec, names.tenant_netns, names.cloud_bridge, recorded, owner
        )
        changed |= made
        state.set("tenant", {**record, "netns": names.tenant_netns, "veth": names.tenant_veth})
        message += (
            f", {names.cloud_bridge} (tenant {spec.tenant.endpoint}: WireGuard "
            f"{cloud.interface}, S3 https://{cloud.api_host} at {cloud.api_address})"
        )
    emit(LabEvent("network", message, changed=changed, seconds=time.monotonic() - step))
    return changed


def _ensure_proxy(
    names: _Names, state: LabState, archive: str, security: str, emit: OnEvent
) -> bool:
    """apt-cacher-ng on the bridge address; changed?"""
    address = names.spec.bridge_address
    conf_dir = names.workdir / "apt-cacher-ng"
    if proxy.running(state.get("proxy_pid"), conf_dir, address):
        emit(LabEvent("proxy", f"apt-cacher-ng on {address}:{proxy.PORT}"))
        return False
    step = time.monotonic()
    for stale in find_pids(str(conf_dir)):
        run(["kill", str(stale)], check=False)
    cache = proxy.cache_dir(names.spec.code)
    state.set("proxy_pid", proxy.start(conf_dir, cache, address, archive, security))
    proxy.warm(address, archive, security, image.SUITE)
    message = f"started apt-cacher-ng on {address}:{proxy.PORT}"
    emit(LabEvent("proxy", message, changed=True, seconds=time.monotonic() - step))
    return True


def _boot_nodes(names: _Names, state: LabState, base: Path, emit: OnEvent) -> bool:
    """Boot every node that does not run, all at once; changed?"""
    spec = names.spec
    cloud_address = _cloud_address(spec)
    authorized = (names.site / f"{spec.ssh_key}.pub").read_text()
    to_boot = []
    for server in spec.servers:
        if pid_alive(state.node(server.name).get("pid"), names.node_needle(server.name)):
            emit(LabEvent(server.name, f"running at {server.address}"))
            continue
        gateway = server is spec.gateway and cloud_address is not None
        plan = node.NodePlan(
            server=server,
            lab_key=names.workdir.name,
            dir=names.node_dir(server.name),
            prefix_length=spec.prefix_length,
            bridge=names.bridge,
            proxy_url=names.proxy_url,
            authorized_key=authorized,
            host_key_dir=names.host_key_dir(server.name),
            cloud_bridge=names.cloud_bridge if gateway else None,
            cloud_address=cloud_address if gateway else None,
        )
        node.mount_root(plan, base)
        node.write_files(plan)
        loops = node.attach_disks(plan, names.workdir / "disks")
        state.set_node(server.name, root=str(plan.root), loops=loops, pid=None)
        to_boot.append((plan, loops))

    def boot_one(plan: node.NodePlan, loops: dict[str, str]) -> LabError | None:
        t0, name = time.monotonic(), plan.server.name
        try:
            pid = node.boot(plan, loops)
            state.set_node(name, pid=pid)
            emit(LabEvent(name, "booting", changed=True))
            if plan.cloud_bridge:
                node.attach_cloud_veth(plan, pid)
            node.wait_ssh_port(plan, pid)
            system = node.system_state(ssh_argv(names.site, name))
        except LabError as exc:
            emit(LabEvent(name, f"failed: {exc.what}", level="warning"))
            return exc
        level = "info" if system == "running" else "warning"
        message = f"up at {plan.server.address} ({system})"
        emit(LabEvent(name, message, True, time.monotonic() - t0, level))
        return None

    if not to_boot:
        return False
    with ThreadPoolExecutor(max_workers=len(to_boot)) as pool:
        errors = [e for e in pool.map(lambda job: boot_one(*job), to_boot) if e is not None]
    if errors:
        raise LabError(
            f"{len(errors)} lab node(s) did not come up",
            cause="\n".join(str(e) for e in errors),
            fix=f"hzcloud lab down --site {names.site} && hzcloud lab up --site {names.site}",
        )
    return True


def _down(site_dir: Path, on_event: OnEvent | None) -> LabResult:
    started = time.monotonic()
    emit = _serialised(on_event)
    check_host()
    names, state = _load(site_dir)
    node_names = sorted({s.name for s in names.spec.servers} | set(state.get("nodes", {})))
    tenant = state.get("tenant") or {"netns": names.tenant_netns, "veth": names.tenant_veth}
    changed = _teardown(
        names.workdir,
        node_names,
        {name: state.node(name).get("pid") for name in node_names},
        state.get("proxy_pid"),
        [names.bridge, names.cloud_bridge, state.get("bridge"), state.get("cloud_bridge")],
        (tenant["netns"], tenant["veth"]),
        emit,
    )
    state.remove()
    seconds = time.monotonic() - started
    message = "down" if changed else "already down: nothing changed"
    emit(LabEvent("lab", message, changed=changed, seconds=seconds))
    return LabResult(changed=changed, seconds=seconds)


def _teardown(
    workdir: Path,
    node_names: list[str],
    pids: dict[str, int | None],
    proxy_pid: int | None,
    bridges: list[str | None],
    tenant: tuple[str, str],
    emit: OnEvent,
) -> bool:
    """Undo everything a lab made on the host, found by its work folder and names; changed?"""

    def stop_one(name: str) -> bool:
        needle = _node_needle(workdir, name)
        stopped = False
        for pid in {pids.get(name), *find_pids(needle)} - {None}:
            stopped |= node.stop(pid, needle)
        if stopped:
            emit(LabEvent(name, "stopped", changed=True))
        return stopped

    changed = False
    with ThreadPoolExecutor(max_workers=max(1, len(node_names))) as pool:
        changed |= any(list(pool.map(stop_one, node_names)))

    if mounts_under(workdir):
        node.unmount_tree(workdir)
        changed = True
    for name in node_names:
        changed |= bool(node.detach_disks(workdir / "disks", name))
        propagate = Path("/run/systemd/nspawn/propagate") / name
        if propagate.is_dir() and not any(propagate.iterdir()):
            propagate.rmdir()
        changed |= net.delete_link(f"vt-{name}"[:15], str(workdir))

    conf_dir = str(workdir / "apt-cacher-ng")
    proxy_pids = {proxy_pid, *find_pids(conf_dir)} - {None}
    alive = [p for p in proxy_pids if pid_alive(p, conf_dir)]
    for pid in alive:
        run(["kill", str(pid)], check=False)
    deadline = time.monotonic() + 5
    while any(pid_alive(p, conf_dir) for p in alive) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in alive:
        if pid_alive(pid, conf_dir):
            run(["kill", "-9", str(pid)], check=False)
    if alive:
        emit(LabEvent("proxy", "stopped apt-cacher-ng (its cache stays)", changed=True))
        changed = True

    if tenant[0]:
        changed |= lab_tenant.stop(tenant[0], str(workdir))
        changed |= net.delete_tenant(*tenant, str(workdir))
    for bridge in sorted({b for b in bridges if b}):
        if net.delete_link(bridge, str(workdir)):
            emit(LabEvent("network", f"removed bridge {bridge}", changed=True))
            changed = True

    for root in cgroup_roots():
        remove_cgroups(root / "hzcloud" / workdir.name)
        if (root / "hzcloud").is_dir() and not any(
            p.is_dir() for p in (root / "hzcloud").iterdir()
        ):
            remove_cgroups(root / "hzcloud")
    if workdir.exists():
        if mounts_under(workdir):
            raise LabError(
                f"{workdir} still has mounts",
                cause="\n".join(map(str, mounts_under(workdir))),
                fix="umount them and run lab down again",
            )
        shutil.rmtree(workdir)
        changed = True
    return changed


def status(site_dir: Path) -> LabResult:
    """Each node's address and whether it runs or is cut off (from the records and the bridge)."""
    started = time.monotonic()
    names, state = _load(site_dir)
    nodes = tuple(
        NodeStatus(s.name, s.address, _node_state(names, state, s.name)) for s in names.spec.servers
    )
    return LabResult(changed=False, seconds=time.monotonic() - started, nodes=nodes)


def _node_state(names: _Names, state: LabState, name: str) -> str:
    pid: int | None = state.node(name).get("pid")
    if pid is None or not pid_alive(pid, names.node_needle(name)):
        return "stopped"
    link = node.host_link(pid)
    return "cut" if link and net.port_state(link) == net.PORT_DISABLED else "running"


# kill, cut and heal take no host lock: a drill must act the moment it is asked (an `up` of
# another lab may hold the lock for a minute), and they touch only this lab's node and its port.


def kill(site_dir: Path, node_name: str, on_event: OnEvent | None = None) -> LabResult:
    """Cut a node's power: nothing it sends on the way down reaches anyone; `up` boots it again."""
    started = time.monotonic()
    emit = _serialised(on_event)
    check_host()
    names, state = _load(site_dir)
    name = names.spec.server(node_name).name
    needle = names.node_needle(name)
    recorded: int | None = state.node(name).get("pid")
    alive = sorted(p for p in {recorded, *find_pids(needle)} if p and pid_alive(p, needle))
    if not alive:
        emit(LabEvent(name, "not running: nothing to kill"))
        return _drill_result(names, started, changed=False)
    # Off the bridge first. SIGKILL closes every socket in the node and its network stack would
    # still send FIN or RST for each while the veth lives: peers would learn of the death at
    # once, which a server losing power never tells them. The veth goes with the node.
    for pid in alive:
        for port in _bridge_ports(names, name, pid):
            net.set_port_state(port, net.PORT_DISABLED)
    for pid in alive:
        node.stop(pid, needle)
    state.set_node(name, pid=None)
    emit(LabEvent(name, "killed (power cut)", changed=True, seconds=time.monotonic() - started))
    return _drill_result(names, started, changed=True)


def cut(site_dir: Path, node_name: str, on_event: OnEvent | None = None) -> LabResult:
    """Partition a node: its bridge port passes nothing, the node keeps running; `heal` undoes."""
    started = time.monotonic()
    emit = _serialised(on_event)
    check_host()
    names, state = _load(site_dir)
    name = names.spec.server(node_name).name
    pid: int | None = state.node(name).get("pid")
    if pid is None or not pid_alive(pid, names.node_needle(name)):
        raise LabUsageError(
            f"{name} is not running: there is nothing to cut off",
            fix=f"hzcloud lab up --site {names.site}",
        )
    ports = _bridge_ports(names, name, pid)
    changed = any([net.set_port_state(port, net.PORT_DISABLED) for port in ports])
    message = "cut off the network (still running)" if changed else "already cut off"
    emit(LabEvent(name, message, changed=changed, seconds=time.monotonic() - started))
    return _drill_result(names, started, changed=changed)


def heal(
    site_dir: Path, node_name: str | None = None, on_event: OnEvent | None = None
) -> LabResult:
    """Undo `cut` for one node or every node: their bridge ports forward again."""
    started = time.monotonic()
    emit = _serialised(on_event)
    check_host()
    names, state = _load(site_dir)
    servers = [names.spec.server(node_name)] if node_name else list(names.spec.servers)
    changed = False
    for server in servers:
        pid: int | None = state.node(server.name).get("pid")
        if pid is None or not pid_alive(pid, names.node_needle(server.name)):
            continue
        ports = _bridge_ports(names, server.name, pid)
        if any([net.set_port_state(port, net.PORT_FORWARDING) for port in ports]):
            emit(LabEvent(server.name, "back on the network", changed=True))
            changed = True
    if not changed:
        emit(LabEvent("lab", "no node is cut off: nothing changed"))
    return _drill_result(names, started, changed=changed)


def _bridge_ports(names: _Names, name: str, pid: int) -> list[str]:
    """The host side of a running node's links on this lab's bridges (management, cloud)."""
    ports = []
    for link in node.host_links(pid).values():
        master = Path(f"/sys/class/net/{link}/master")
        if master.exists() and master.resolve().name in (names.bridge, names.cloud_bridge):
            ports.append(link)
    mgmt = node.host_link(pid)
    if mgmt not in ports:
        raise LabError(
            f"{name}: its link on {names.bridge} was not found",
            cause=f"nspawn PID {pid}: host0's peer is {mgmt or 'unknown'}",
            fix=f"hzcloud lab down --site {names.site} && hzcloud lab up --site {names.site}",
        )
    return sorted(ports)


def _drill_result(names: _Names, started: float, changed: bool) -> LabResult:
    return LabResult(
        changed=changed, seconds=time.monotonic() - started, nodes=status(names.site).nodes
    )


def preview_up(site_dir: Path) -> tuple[LabEvent, ...]:
    """What `up` would do, touching nothing (for --dry-run)."""
    site = site_dir.resolve()
    site_yaml = site / "site.yaml"
    events = []
    if not site_yaml.exists():
        events.append(LabEvent("site", f"would write {site_yaml}", changed=True))
        site_yaml = _template()
    names = _Names(site, load_spec(site_yaml))
    state = LabState(names.state_dir / "lab.json")
    recipe = image.recipe(*image.host_mirrors())
    if image.cached_image(recipe) is None:
        events.append(LabEvent("image", f"would build base-{image.recipe_hash(recipe)}", True))
    for bridge in (names.bridge, names.cloud_bridge if names.spec.tenant else None):
        if bridge and not link_exists(bridge):
            events.append(LabEvent("network", f"would make bridge {bridge}", changed=True))
    if not proxy.running(
        state.get("proxy_pid"), names.workdir / "apt-cacher-ng", names.spec.bridge_address
    ):
        events.append(LabEvent("proxy", "would start apt-cacher-ng", changed=True))
    for server in names.spec.servers:
        if pid_alive(state.node(server.name).get("pid"), names.node_needle(server.name)):
            events.append(LabEvent(server.name, f"running at {server.address}"))
        else:
            disks = f" with {', '.join(server.disks)}" if server.disks else ""
            events.append(LabEvent(server.name, f"would boot at {server.address}{disks}", True))
    return tuple(events)


def preview_down(site_dir: Path) -> tuple[LabEvent, ...]:
    """What `down` would remove, touching nothing (for --dry-run)."""
    names, state = _load(site_dir)
    events = [
        LabEvent(s.name, "would stop", changed=True)
        for s in names.spec.servers
        if pid_alive(state.node(s.name).get("pid"), names.node_needle(s.name))
    ]
    owner = str(names.workdir)
    events += [
        LabEvent("network", f"would remove bridge {b}", changed=True)
        for b in (names.bridge, names.cloud_bridge)
        if link_exists(b) and net.owner_of(b) == owner
    ]
    if names.workdir.exists():
        events.append(LabEvent("lab", f"would delete {names.workdir} (disks, overlays)", True))
    return tuple(events)


def ssh_argv(site_dir: Path, node_name: str) -> list[str]:
    """The ssh command line that reaches a node as hzcloud does (pinned host key, lab key)."""
    names, _ = _load(site_dir)
    server = names.spec.server(node_name)
    return [
        "ssh",
        "-F",
        "none",
        "-i",
        str(names.site / names.spec.ssh_key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={names.site / 'state' / 'known_hosts'}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
        f"{names.spec.ssh_user}@{server.address}",
    ]
