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
# Roles whose nodes run containerd.
CONTAINER_ROLES = frozenset({"k8s-server", "k8s-agent"})
CLOUD_IFACE = "cloud0"

# Host-wide kernel settings that kubelet insists on (it sets them, and stops when it cannot:
# /proc/sys outside net/ is read-only in a node). The node is shown a file with the value kubelet
# wants over each real entry; the host keeps its own values.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
}
SYSCTL_VIEW_DIR = "etc/hzcloud-lab/sysctl"

# Runs in the node at boot, before any service. nspawn mounts the v1 controller hierarchies
# read-only (each node sees only its own subtree, through a cgroup namespace); a container
# runtime and kubelet make cgroups in them, so they are remounted read-write (these mounts only,
# not the host's). Then the kernel-setting view above is bound over /proc/sys. kubelet stops when
# it cannot open /dev/kmsg (its OOM watcher), which a node has not, and reading the host's would
# take CAP_SYSLOG: /dev/kmsg is a null device (a node of its own: as a symlink to /dev/null,
# services with ProtectKernelLogs= would mask /dev/null itself, and chrony stops). containerd
# still reports OOM kills from the memory cgroup.
NODE_SETUP_UNIT = f"""\
[Unit]
Description=Prepare this lab node for containers and kubelet (hzcloud lab)
DefaultDependencies=no
Before=sysinit.target
ConditionVirtualization=container

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*/; do [ "$(stat -f -c %%T "$d")" = cgroupfs ] \\
&& mount -o remount,bind,rw "$d"; done; true'
ExecStart=/bin/sh -c 'for f in /{SYSCTL_VIEW_DIR}/*; do \\
mount --bind "$f" "/proc/sys/$(basename "$f" | tr . /)"; done'
ExecStart=/bin/sh -c '[ -e /dev/kmsg ] || mknod -m 0600 /dev/kmsg c 1 3'

[Install]
WantedBy=sysinit.target
"""


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
        # other's units (status=219/CGROUP) and could kill each other's services; kubelets
        # would share one kubepods tree. One per hierarchy, v1 controllers included.
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


def node_files(plan: NodePlan) -> dict[str, str]:
    """What the lab writes into a node before every boot: its identity, as an installer would.

    Nothing here is a file the roles manage (tests/unit/test_file_owners.py): the hostname comes
    from nspawn's machine name (no /etc/hostname: systemd keeps the container's), /etc/hosts is
    base's, and the lab's apt proxy file has a name of its own beside base's.
    """
    server = plan.server
    files = {
        "etc/apt/apt.conf.d/00hzcloud-lab-proxy": f'Acquire::http::Proxy "{plan.proxy_url}";\n',
        "etc/systemd/network/10-host0.network": _network_file(
            "host0", f"{server.address}/{plan.prefix_length}"
        ),
        "root/.ssh/authorized_keys": plan.authorized_key.strip() + "\n",
        "etc/systemd/system/hzcloud-lab-node.service": NODE_SETUP_UNIT,
        **{
            f"{SYSCTL_VIEW_DIR}/{k.replace('/', '.')}": v + "\n" for k, v in KUBELET_SYSCTLS.items()
        },
    }
    if plan.cloud_address:
        files["etc/systemd/network/11-cloud0.network"] = _network_file(
            CLOUD_IFACE, plan.cloud_address
        )
    return files


def write_files(plan: NodePlan) -> None:
    """Give the node its identity before it boots."""
    root = plan.root
    files = node_files(plan)
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
    wants = root / "etc/systemd/system/sysinit.target.wants/hzcloud-lab-node.service"
    if not wants.is_symlink():
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to("/etc/systemd/system/hzcloud-lab-node.service")


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
    ]
    if CONTAINER_ROLES.intersection(plan.server.roles):
        # runc gives each container a session keyring of its own; nspawn's system-call filter
        # answers keyctl with EPERM (`runc create failed: unable to join session keyring`).
        argv.append("--system-call-filter=@keyring")
    else:
        # Nodes are disposable: dpkg's fsyncs cost seconds per package for nothing. Not on
        # Kubernetes nodes: nspawn fails every open() with O_SYNC (EINVAL) to suppress it, and
        # containerd's content store opens its files so (`ctr images import` fails).
        argv.append("--suppress-sync=yes")

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


def host_links(pid: int) -> dict[str, str]:
    """The host side of each of the node's veths: {interface in the node: link on the host}.

    nspawn names them `vb-<machine>` (and the cloud one `vt-<machine>`) but shortens long names;
    a veth's peer index in the node (`iflink`) is the host's ifindex of its other end.
    """
    init = container_init(pid)
    if init is None:
        return {}
    peers = {}
    for iface in Path(f"/proc/{init}/root/sys/class/net").glob("*"):
        try:
            own, peer = ((iface / n).read_text().strip() for n in ("ifindex", "iflink"))
        except OSError:
            continue
        if own != peer:
            peers[peer] = iface.name
    links = {}
    for link in Path("/sys/class/net").iterdir():
        try:
            index = (link / "ifindex").read_text().strip()
        except OSError:
            continue
        if index in peers:
            links[peers[index]] = link.name
    return links


def host_link(pid: int) -> str | None:
    """The host side of the node's management veth (host0)."""
    return host_links(pid).get("host0")


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
