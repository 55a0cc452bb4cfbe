"""The lab on this host: eight real nodes, air-gapped, with disks and a cloud tenant."""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hzcloud import lab
from hzcloud.commands.lab import app
from hzcloud.lab import tenant as lab_tenant
from hzcloud.lab.provider import _load
from hzcloud.lab.spec import load_spec
from hzcloud.resources import resource

pytestmark = pytest.mark.lab


def servers(site: Path) -> list[dict[str, object]]:
    return list(yaml.safe_load((site / "site.yaml").read_text())["servers"])


def on(
    site: Path, node: str, command: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*lab.ssh_argv(site, node), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def on_all(site: Path, command: str) -> dict[str, subprocess.CompletedProcess[str]]:
    names = [str(s["name"]) for s in servers(site)]
    with ThreadPoolExecutor(len(names)) as pool:
        return dict(zip(names, pool.map(lambda n: on(site, n, command), names), strict=True))


def test_site_folder_is_ready(lab_site: Path) -> None:
    assert (lab_site / "site.yaml").read_text() == (
        resource("inventories") / "lab/site.yaml"
    ).read_text()
    assert (lab_site / "keys/id_ed25519").stat().st_mode & 0o777 == 0o600
    lines = (lab_site / "state/known_hosts").read_text().splitlines()
    assert [line.split()[0] for line in lines] == [
        f"{s['name']},{s['address']}" for s in servers(lab_site)
    ]


def test_every_node_answers_with_its_hostname(lab_site: Path) -> None:
    results = on_all(lab_site, "hostname; systemctl is-system-running")
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
        assert result.stdout.split() == [name, "running"]


def test_nodes_have_no_route_out(lab_site: Path) -> None:
    for name, result in on_all(
        lab_site, "ip -4 route show default; ip -4 route get 1.1.1.1"
    ).items():
        assert result.stdout.strip() == "", name
        assert "unreachable" in result.stderr, name


def test_apt_works_through_the_proxy(lab_site: Path) -> None:
    result = on(lab_site, "lab-05", "apt-config dump Acquire::http::Proxy && apt-get update -q")
    assert result.returncode == 0, result.stderr
    assert ":3142" in result.stdout


def test_storage_nodes_have_a_block_device(lab_site: Path) -> None:
    for server in servers(lab_site):
        check = on(
            lab_site,
            str(server["name"]),
            "test -b /dev/vdb && "
            "dd if=/dev/zero of=/dev/vdb bs=1M count=4 oflag=direct status=none",
        )
        assert (check.returncode == 0) == bool(server.get("disks")), (server["name"], check.stderr)


def test_tenant_is_reached_only_through_the_gateway(lab_site: Path) -> None:
    """With a tenant in site.yaml, only the gateway reaches it; without one, no node has a link."""
    spec = load_spec(lab_site / "site.yaml")
    if spec.tenant is None:
        links = on_all(lab_site, "ip -o link show")
        assert all(" cloud0" not in r.stdout for r in links.values()), links
        return
    assert spec.gateway is not None
    pings = on_all(lab_site, f"ping -c1 -W1 {spec.tenant.endpoint}")
    assert pings.pop(spec.gateway.name).returncode == 0
    assert all(p.returncode != 0 for p in pings.values())


def test_changed_host_key_is_refused(lab_site: Path, tmp_path: Path) -> None:
    lines = (lab_site / "state/known_hosts").read_text().splitlines()
    hosts, key = lines[0].split(" ", 1)[0], lines[1].split(" ", 1)[1]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{hosts} {key}\n")
    argv = [
        a if not a.startswith("UserKnownHostsFile=") else f"UserKnownHostsFile={forged}"
        for a in lab.ssh_argv(lab_site, "lab-01")
    ]
    result = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 255
    assert (
        "HOST IDENTIFICATION HAS CHANGED" in result.stderr or "verification failed" in result.stderr
    )


def test_rerun_changes_nothing(lab_site: Path) -> None:
    events: list[lab.LabEvent] = []
    result = lab.up(lab_site, events.append)
    assert not result.changed
    assert not [e for e in events if e.changed]
    assert events[-1].message == "already up: nothing changed"


def test_dry_run_on_the_running_lab_would_change_nothing(lab_site: Path) -> None:
    result = CliRunner().invoke(app, ["up", "--dry-run", "--site", str(lab_site), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"changes": []}


def test_status_json(lab_site: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--site", str(lab_site), "--output", "json"])
    assert result.exit_code == 0, result.output
    expected = [
        {"name": s["name"], "address": s["address"], "state": "running"} for s in servers(lab_site)
    ]
    assert json.loads(result.stdout) == {"nodes": expected}


def test_ssh_returns_the_command_exit_code(lab_site: Path) -> None:
    result = CliRunner().invoke(app, ["ssh", "lab-03", "--site", str(lab_site), "--", "exit", "7"])
    assert result.exit_code == 7


def test_the_bridge_keeps_its_address_as_ports_come_and_go(lab_site: Path) -> None:
    """Like a switch: a node's power cut does not change the host's MAC under the other nodes.

    A kernel bridge left alone takes its lowest port MAC and drops it when that port goes (the
    node's veth, at a power cut): the other nodes' ARP entries for the host then point nowhere
    until probed again, and a client on the host waits seconds for a reply that went astray.
    """
    names, _ = _load(lab_site)
    bridge = Path("/sys/class/net", names.bridge, "address")
    before = bridge.read_text().strip()
    port = f"hzt{os.getpid() % 100000}"
    # lower than any address the bridge could have: a bridge following its ports would take it
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            port,
            "address",
            "00:00:00:00:00:07",
            "type",
            "veth",
            "peer",
            "name",
            port + "p",
        ],
        check=True,
    )
    try:
        subprocess.run(["ip", "link", "set", port, "master", names.bridge], check=True)
        assert bridge.read_text().strip() == before
    finally:
        subprocess.run(["ip", "link", "del", port], check=True)
    assert bridge.read_text().strip() == before


def _leftovers(site: Path) -> list[str]:
    """What this lab has on the host: its links, namespace, mounts, loops, processes, cgroups
    and folders (found by its own names: other labs may run on the host at the same time)."""
    names, _state = _load(site)
    work = str(names.workdir)
    machines = [s.name for s in names.spec.servers]
    links = {names.bridge, names.cloud_bridge, names.tenant_veth}
    links |= {f"{prefix}-{m}"[:15] for m in machines for prefix in ("vb", "vt")}
    found = [f"link {p.name}" for p in Path("/sys/class/net").iterdir() if p.name in links]
    found += [f"netns {p.name}" for p in Path("/run/netns").glob(names.tenant_netns)]
    found += [
        f"mount {line.split()[1]}"
        for line in Path("/proc/mounts").read_text().splitlines()
        if work in line
    ]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    found += [f"loop {line}" for line in loops.splitlines() if work in line]
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and work + "/" in cmdline:
            found.append(f"process {proc.name} {cmdline.replace(chr(0), ' ')[:80]}")
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/hzcloud/{names.workdir.name}")]
    found += [f"dir {p}" for p in Path(work).glob("nodes")]
    if names.spec.tenant is not None:
        sock = lab_tenant.wg_socket(lab_tenant.tenant_net(names.spec).interface)
        found += [f"socket {sock}"] if sock.exists() else []
    return found


@pytest.mark.lab_teardown
def test_down_leaves_nothing_behind_and_up_again_is_fast(lab_site: Path) -> None:
    assert _leftovers(lab_site), "the probe should see a running lab"
    lab.down(lab_site)
    assert _leftovers(lab_site) == []
    assert all(n.state == "stopped" for n in lab.status(lab_site).nodes)
    assert not lab.down(lab_site).changed

    started = time.monotonic()
    result = lab.up(lab_site)
    assert time.monotonic() - started < 60
    assert [n.state for n in result.nodes] == ["running"] * len(servers(lab_site))
    assert on(lab_site, "lab-01", "true").returncode == 0
