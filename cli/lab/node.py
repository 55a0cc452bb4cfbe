"""One lab node: an overlay over the base image, booted by systemd-nspawn."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from hzcloud.lab.errors import LabError
from hzcloud.lab.net import mark
from hzcloud.lab.spec import LabServer
from hzcloud.lab.system import (
    cgroup_roots,
    link_exists,
    mounts_under,
    pid_alive,
    run,
    spawn_detached,
)

DISK_SIZE = 10 * 1024**3
CLOUD_IFACE = "cloud0"


@dataclass(frozen=True)
class NodePlan:
    """Where a node lives on the host and what it is given."""

    server: LabServer
    lab_key: str
    dir: Path
    prefix_length: int
    bridge: str
    proxy_url: str
    authorized_key: str
    host_key_dir: Path
    cloud_bridge: str | None = None
    cloud_address: str | None = None

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def cgroups(self) -> list[Path]:
        # Each node needs cgroups of its own: sharing one, the nodes' systemds trip over each
        # other's units (status=219/CGROUP) and could kill each other's services.
        return [root / "hzcloud" / self.lab_key / self.server.name for root in cgroup_roots()]

    @property
    def cloud_veth(self) -> str:
        return f"vt-{self.server.name}"[:15]


def _network_file(iface: str, address: str) -> str:
    # No gateway: the lab, like the hospital it stands for, has no route out.
    return (
        f"[Match]\nName={iface}\n\n[Network]\nAddress={address}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )


def host_key(key_dir: Path) -> str:
    """The node's ed25519 host key (made once, kept with the site); its public line."""
    key = key_dir / "ssh_host_ed25519_key"
    if not key.exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)])
    return " ".join((key_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2])


def mount_root(plan: NodePlan, image: Path) -> bool:
    """Mount the node's copy-on-write root over the image; changed?"""
    if plan.root in mounts_under(plan.root):
        return False
    for sub in ("upper", "work", "root"):
        (plan.dir / sub).mkdir(parents=True, exist_ok=True)
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={image},upperdir={plan.dir / 'upper'},workdir={plan.dir / 'work'}",
            str(plan.root),
        ]
    )
    return True


def write_files(plan: NodePlan) -> None:
    """Give the node its identity before it boots."""
    root, server = plan.root, plan.server
    files = {
        "etc/hostname": f"{server.name}\n",
        "etc/hosts": f"127.0.0.1\tlocalhost\n{server.address}\t{server.name}\n",
        "etc/apt/apt.conf.d/01hzcloud-proxy": f'Acquire::http::Proxy "{plan.proxy_url}";\n',
        "etc/systemd/network/10-host0.network": _network_file(
            "host0", f"{server.address}/{plan.prefix_length}"
        ),
        "root/.ssh/authorized_keys": plan.authorized_key.strip() + "\n",
    }
    if plan.cloud_address:
        files["etc/systemd/network/11-cloud0.network"] = _network_file(
            CLOUD_IFACE, plan.cloud_address
        )
    machine_id = root / "etc/machine-id"
    if not machine_id.read_text().strip():
        files["etc/machine-id"] = uuid.uuid4().hex + "\n"
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
    (root / "root/.ssh").chmod(0o700)
    (root / "root/.ssh/authorized_keys").chmod(0o600)
    for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"):
        target = root / "etc/ssh" / name
        shutil.copyfile(plan.host_key_dir / name, target)
        target.chmod(0o600 if not name.endswith(".pub") else 0o644)


def attach_disks(plan: NodePlan, disk_dir: Path) -> dict[str, str]:
    """A sparse file and a loop device per declared disk; {node device: loop device}."""
    loops = {}
    for device in plan.server.disks:
        image = disk_dir / f"{plan.server.name}-{Path(device).name}.img"
        if not image.exists():
            disk_dir.mkdir(parents=True, exist_ok=True)
            with open(image, "wb") as f:
                f.truncate(DISK_SIZE)
        found = run(["losetup", "-j", str(image)]).stdout.split(":", 1)[0].strip()
        loops[device] = found or run(["losetup", "--find", "--show", str(image)]).stdout.strip()
    return loops


def detach_disks(disk_dir: Path, name: str) -> list[str]:
    detached = []
    for image in sorted(disk_dir.glob(f"{name}-*.img")):
        for line in run(["losetup", "-j", str(image)]).stdout.splitlines():
            loop = line.split(":", 1)[0]
            run(["losetup", "-d", loop], check=False)
            detached.append(loop)
    return detached


def nspawn_argv(plan: NodePlan, loops: dict[str, str]) -> list[str]:
    argv = [
        "systemd-nspawn",
        f"--directory={plan.root}",
        "--boot",
        f"--machine={plan.server.name}",
        # The host has no system bus: no machined registration, no scope of its own.
        "--register=no",
        "--keep-unit",
        f"--network-bridge={plan.bridge}",
        "--bind=/dev/net/tun",
        "--console=read-only",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        # Nodes are disposable: dpkg's fsyncs cost seconds per package for nothing.
        "--suppress-sync=yes",
    ]
    for device, loop in loops.items():
        argv += [f"--bind={loop}:{device}", f"--property=DeviceAllow={loop} rwm"]
    if plan.cloud_bridge:
        argv.append(f"--network-veth-extra={plan.cloud_veth}:{CLOUD_IFACE}")
    return argv


def boot(plan: NodePlan, loops: dict[str, str]) -> int:
    """Start the node detached; its nspawn PID."""
    return spawn_detached(nspawn_argv(plan, loops), plan.dir / "console.log", cgroups=plan.cgroups)


def attach_cloud_veth(plan: NodePlan, pid: int, timeout: float = 20) -> None:
    """Put the node's second interface on the cloud bridge once nspawn has made it."""
    deadline = time.monotonic() + timeout
    while not link_exists(plan.cloud_veth):
        if time.monotonic() > deadline or not pid_alive(pid):
            raise LabError(
                f"{plan.server.name}: its cloud interface {plan.cloud_veth} never appeared",
                cause=console_tail(plan),
            )
        time.sleep(0.05)
    mark(plan.cloud_veth, str(plan.dir.parents[1]))
    run(["ip", "link", "set", plan.cloud_veth, "master", str(plan.cloud_bridge), "up"])


def console_tail(plan: NodePlan, lines: int = 15) -> str:
    try:
        return "\n".join(
            (plan.dir / "console.log").read_text(errors="replace").splitlines()[-lines:]
        )
    except OSError:
        return ""


def wait_ssh_port(plan: NodePlan, pid: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise LabError(f"{plan.server.name} stopped while booting", cause=console_tail(plan))
        try:
            with socket.create_connection((plan.server.address, 22), timeout=0.3):
                return
        except OSError:
            time.sleep(0.1)
    raise LabError(
        f"{plan.server.name}: sshd did not answer within {timeout:.0f} s", cause=console_tail(plan)
    )


def system_state(ssh: list[str], timeout: float = 90) -> str:
    """The node's `systemctl is-system-running --wait` over SSH (running, degraded, ...)."""
    try:
        out = subprocess.run(
            [*ssh, "systemctl is-system-running --wait"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return "starting"
    if out.returncode == 255:
        raise LabError(f"ssh to {ssh[-1]} failed", cause=out.stderr.strip())
    return out.stdout.strip() or "unknown"


def container_init(pid: int) -> int | None:
    """The PID of the node's systemd (nspawn's child) as the host sees it."""
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in children.read_text().split():
                return int(child)
        except OSError:
            pass
    return None


def stop(pid: int | None, needle: str, timeout: float = 10) -> bool:
    """Pull the node's plug: SIGKILL its init ends its PID namespace at once; stopped anything?"""
    if not pid_alive(pid, needle):
        return False
    assert pid is not None
    init = container_init(pid)
    for target in (init, pid):
        if target is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while pid_alive(pid, needle) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pid_alive(pid, needle):
            break
    return True


def unmount_tree(path: Path) -> None:
    for point in mounts_under(path):
        if run(["umount", str(point)], check=False).returncode != 0:
            run(["umount", "-l", str(point)], check=False)
