"""The renderer: the plan as plain Ansible inventory, group_vars and ansible.cfg in state/."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from hzcloud import phases, wayin
from hzcloud.model import Role, Site
from hzcloud.phases.data import redis_master_name
from hzcloud.phases.kubernetes import cluster_dns_ip
from hzcloud.pki import ensure_pki, pki_dir
from hzcloud.plan import Plan
from hzcloud.resources import resource
from hzcloud.secrets import SECRETS_FILE, ensure_secrets
from hzcloud.siteyaml import require_writable

STATE_DIR = "state"


@dataclass(frozen=True)
class Rendered:
    state_dir: Path
    written: tuple[Path, ...]
    unchanged: tuple[Path, ...]

    @property
    def inventory(self) -> Path:
        return self.state_dir / "inventory.yml"

    @property
    def ansible_cfg(self) -> Path:
        return self.state_dir / "ansible.cfg"


def group_name(role: Role | str) -> str:
    """Ansible group of a role (Ansible warns about '-' in group names)."""
    return str(role).replace("-", "_")


def ssh_key_path(site: Site, site_dir: Path) -> Path:
    key = Path(os.path.expanduser(site.ssh.key))
    return key if key.is_absolute() else (site_dir / key).resolve()


def _context(site: Site, plan: Plan, site_dir: Path, state_dir: Path) -> dict[str, Any]:
    groups = [(group_name(r), [n.name for n in plan.hosts(r)]) for r in Role]
    time_server = "" if site.networks.ntp else plan.nodes[0].address
    known_hosts_managed = (state_dir / "lab").exists()
    return {
        "site": site,
        "plan": plan,
        "site_dir": str(site_dir),
        "artifacts_dir": str(phases.artifacts_path(site, site_dir)),
        "phase_vars": phases.group_vars(),
        "redis_master_name": redis_master_name(site.hospital.code),
        "site_file": str(site_dir / "site.yaml"),
        "pki_dir": str(pki_dir(site_dir)),
        "pod_subnets": _pod_subnets(site, plan),
        "api_service_ip": str(next(site.networks.service_cidr.hosts())),
        "cluster_dns_ip": cluster_dns_ip(site),
        "state_dir": str(state_dir),
        "ssh_key": str(ssh_key_path(site, site_dir)),
        "groups": groups,
        "nodes": [{"name": n.name, "address": n.address} for n in plan.nodes],
        "time_server": time_server,
        "dns": [str(d) for d in site.networks.dns],
        "mirror": str(site.networks.mirror).rstrip("/") if site.networks.mirror else "",
        "tenants": [
            {
                "name": t.name,
                "provider": t.provider,
                "region": t.region,
                "endpoint": str(t.endpoint),
                "subnet": str(t.subnet),
            }
            for t in site.cloud.tenants
        ],
        "way_in_routes": [asdict(r) for r in wayin.routes(site, plan, site_dir)],
        "way_in_nodes": [
            {"name": n.name, "address": n.address}
            for n in plan.nodes
            if {"k8s-server", "k8s-agent"} & set(n.roles)
        ],
        "forks": max(10, len(plan.nodes) * 2),
        "strategy_plugins": _mitogen_strategies(),
        "roles_path": str(resource("playbooks") / "roles"),
        # Short: ssh control sockets must fit in 108 bytes.
        "control_path_dir": f"/tmp/hz-{site.hospital.code}",
        # The lab writes every host key before boot; a real site records them at first contact.
        "strict_host_keys": "yes" if known_hosts_managed else "accept-new",
    }


def _mitogen_strategies() -> str:
    """Where Mitogen's strategy plugins are, when it is installed (a dependency of hzcloud)."""
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or spec.origin is None:
        return ""
    return str(Path(spec.origin).parent / "plugins" / "strategy")


def _pod_subnets(site: Site, plan: Plan) -> dict[str, str]:
    """Each node's share of the pod network, by its place in the plan (a /24 where it fits)."""
    pods = site.networks.pod_cidr
    bits = max(1, (len(plan.nodes) - 1).bit_length())
    prefix = max(24, pods.prefixlen + bits)
    subnets = pods.subnets(new_prefix=prefix)
    return {n.name: str(next(subnets)) for n in plan.nodes}


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def render(site: Site, plan: Plan, site_dir: Path) -> Rendered:
    """Write inventory.yml, group_vars/ and ansible.cfg into <site>/state/ (only what changed)."""
    site_dir = site_dir.resolve()
    # Both refuse (exit 2) before anything is written: a read-only folder, a damaged secrets.yaml.
    require_writable(site_dir)
    ensure_secrets(site_dir)
    state_dir = site_dir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    templates = resource("templates") / "state"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["to_json"] = lambda v: json.dumps(v)
    env.filters["to_yaml"] = lambda v: yaml.safe_dump(v, default_flow_style=False, sort_keys=False)
    ctx = _context(site, plan, site_dir, state_dir)
    written: list[Path] = []
    unchanged: list[Path] = []
    for tpl in sorted(templates.rglob("*.j2")):
        rel = tpl.relative_to(templates)
        out = state_dir / str(rel)[: -len(".j2")]
        text = env.get_template(rel.as_posix()).render(ctx)
        (written if _write_if_changed(out, text) else unchanged).append(out)
    # Secrets reach Ansible through group_vars without a second copy of them.
    link = state_dir / "group_vars" / "all" / "secrets.yml"
    target = Path("..") / ".." / ".." / SECRETS_FILE
    if not link.is_symlink() or Path(os.readlink(link)) != target:
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    ensure_pki(site_dir, site.hospital.name)
    Path(ctx["control_path_dir"]).mkdir(mode=0o700, exist_ok=True)
    known_hosts = state_dir / "known_hosts"
    if not known_hosts.exists():  # touch() on an existing file would bump its mtime
        known_hosts.touch(mode=0o600)
    return Rendered(state_dir, tuple(written), tuple(unchanged))
