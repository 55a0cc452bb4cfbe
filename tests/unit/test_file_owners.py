"""One writer per file: no two of (the roles, the lab provider, hzcloud's PKI) manage one path.

Two writers of one file undo each other on every run: the site CA made by two roles with two
key specs was re-keyed by each (issue 16), and the lab rewrote /etc/hosts at every boot that
base then rewrote back. Paths are read from the role task files (variables resolved from the
roles' defaults and the group_vars rendered for the lab site), from the lab's image recipe and
node files, and from hzcloud's PKI module.
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from hzcloud import pki
from hzcloud.lab import image, node
from hzcloud.lab.spec import LabServer
from hzcloud.model import load_site
from hzcloud.plan import plan_site
from hzcloud.render import render
from hzcloud.resources import resource

ROLES = resource("playbooks") / "roles"
# Modules that write a file at `dest`/`path` (directories are left out: they may be shared).
WRITERS = {
    "template": "dest",
    "copy": "dest",
    "file": "path",
    "lineinfile": "path",
    "blockinfile": "path",
    "replace": "path",
    "get_url": "dest",
    "openssl_privatekey": "path",
    "openssl_publickey": "path",
    "x509_certificate": "path",
    "openssl_csr": "path",
}
VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _module(task: dict[str, Any]) -> tuple[str, Any] | None:
    for key, value in task.items():
        short = key.rsplit(".", 1)[-1]
        if short in WRITERS or short == "hostname":
            return short, value
    return None


def _tasks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for task in items or []:
        out.append(task)
        for key in ("block", "rescue", "always"):
            out += _tasks(task.get(key) or [])
    return out


def _resolve(text: str, variables: dict[str, Any], depth: int = 0) -> str:
    resolved = VAR.sub(lambda m: str(variables.get(m.group(1), m.group(0))), text)
    return resolved if resolved == text or depth > 5 else _resolve(resolved, variables, depth + 1)


@pytest.fixture(scope="module")
def variables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The roles' defaults overlaid by the group_vars rendered for the lab site."""
    site_dir = tmp_path_factory.mktemp("owners")
    shutil.copy(resource("inventories") / "lab" / "site.yaml", site_dir / "site.yaml")
    site = load_site(site_dir)
    rendered = render(site, plan_site(site), site_dir)
    merged: dict[str, Any] = {}
    for defaults in sorted(ROLES.glob("*/defaults/main.yml")):
        merged.update(yaml.safe_load(defaults.read_text()) or {})
    for gv in sorted((rendered.state_dir / "group_vars" / "all").glob("*.yml")):
        if gv.name != "secrets.yml":
            merged.update(yaml.safe_load(gv.read_text()) or {})
    return merged


def _hz_files_paths(role_dir: Path, files_arg: str) -> list[str]:
    """The literal paths of the file list template an `hz_files` task renders."""
    found = re.search(r"lookup\('ansible\.builtin\.template', '([^']+)'\)", files_arg)
    assert found, f"hz_files without a template list: {files_arg}"
    text = (role_dir / "templates" / found.group(1)).read_text()
    return [p for p in re.findall(r"\['(/[^'{]+)'", text) if not p.endswith("/")]


def role_paths(variables: dict[str, Any]) -> dict[str, set[str]]:
    """path -> the roles whose tasks write it."""
    owners: dict[str, set[str]] = defaultdict(set)
    for task_file in sorted(ROLES.glob("*/tasks/*.yml")):
        role = task_file.parts[-3]
        for task in _tasks(yaml.safe_load(task_file.read_text()) or []):
            files_arg = (task.get("hz_files") or {}).get("files")
            if isinstance(files_arg, str):  # the kubernetes role's many-files module
                for path in _hz_files_paths(task_file.parents[1], files_arg):
                    owners[path].add(role)
                continue
            found = _module(task)
            if found is None:
                continue
            short, args = found
            if short == "hostname":
                owners["/etc/hostname"].add(role)
                continue
            if not isinstance(args, dict) or args.get("state") == "directory":
                continue
            raw = args.get(WRITERS[short])
            if not isinstance(raw, str):
                continue
            loop = task.get("loop")
            candidates = [raw]
            if "item" in raw and isinstance(loop, list):
                candidates = [
                    raw.replace("{{ item }}", str(i))
                    if not isinstance(i, dict)
                    else _resolve(
                        raw.replace("item.", "item_"), {f"item_{k}": v for k, v in i.items()}
                    )
                    for i in loop
                ]
            for candidate in candidates:
                path = _resolve(candidate, variables)
                if "{{" not in path and "{%" not in path:
                    owners[path].add(role)
    return owners


def lab_paths() -> set[str]:
    recipe = image.recipe("http://mirror.invalid/debian", "http://mirror.invalid/security")
    files: dict[str, str] = recipe["files"]  # type: ignore[assignment]
    gateway = node.NodePlan(
        server=LabServer("n1", "10.0.0.11", ("/dev/vdb",), ("gateway",)),
        lab_key="k",
        dir=Path("/nonexistent"),
        prefix_length=24,
        bridge="br",
        proxy_url="http://10.0.0.1:3142",
        authorized_key="ssh-ed25519 AAAA",
        host_key_dir=Path("/nonexistent"),
        cloud_bridge="cb",
        cloud_address="10.1.0.3/24",
    )
    return {"/" + p for p in [*files, *node.node_files(gateway), "etc/machine-id"]}


def test_no_file_has_two_writers(variables: dict[str, Any]) -> None:
    owners = role_paths(variables)
    for path in lab_paths():
        owners[path].add("lab provider")
    pki_dir = str(pki.pki_dir(Path(variables["hz_pki_dir"]).parent))
    for ca in pki.AUTHORITIES:
        for ext in ("crt", "key"):
            owners[f"{pki_dir}/{ca.name}.{ext}"].add("hzcloud pki")
    shared = {path: sorted(who) for path, who in owners.items() if len(who) > 1}
    assert shared == {}, "files with more than one writer: " + repr(shared)


def test_the_scan_sees_the_files_it_must(variables: dict[str, Any]) -> None:
    """The check above is only as good as what it finds."""
    owners = role_paths(variables)
    assert owners["/etc/hosts"] == {"base"}
    assert owners["/etc/hostname"] == {"base"}
    assert owners["/etc/patroni/config.yml"] == {"postgres_ha"}
    assert owners["/etc/default/ceph"] == {"ceph"}
    assert owners["/etc/systemd/system/kubelet.service"] == {"kubernetes"}
    pki_dir = variables["hz_pki_dir"]
    assert owners[f"{pki_dir}/apiserver.crt"] == {"kubernetes"} or any(
        p.startswith(pki_dir) for p in owners
    )
    assert "/etc/apt/apt.conf.d/00hzcloud-lab-proxy" in lab_paths()
    assert "/etc/hosts" not in lab_paths()
