"""Host bridges and the cloud tenant's network namespace, each marked with the lab that owns it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hzcloud.lab.system import link_exists, run


def _sysctl(path: str, value: str) -> None:
    Path("/proc/sys", path).write_text(value)


def owner_of(name: str) -> str:
    """The lab (work folder) recorded in the link's alias; empty when none."""
    try:
        return Path(f"/sys/class/net/{name}/ifalias").read_text().strip()
    except OSError:
        return ""


def mark(name: str, owner: str) -> None:
    # The alias says which lab made the link, so one lab's `down` never takes another's.
    Path(f"/sys/class/net/{name}/ifalias").write_text(owner)


# /sys/class/net/*/addr_assign_type: the address was set by hand (not random, not inherited).
NET_ADDR_SET = "3"


def bridge_mac(name: str) -> str:
    """The bridge's own MAC: locally administered, unicast, the same for the same name."""
    return "02:" + ":".join(f"{b:02x}" for b in hashlib.sha256(name.encode()).digest()[:5])


def ensure_bridge(name: str, owner: str, address: str | None = None) -> bool:
    """A bridge that never forwards off-link, with the host's address on it if given; changed?

    The bridge gets a MAC of its own. Left to the kernel, a bridge takes the lowest MAC among
    its ports (nspawn derives them from the machine names, so always the same node's) and
    changes it when that port goes: that node's power cut would change the host's MAC under
    every other node, whose cached ARP entry then sends the host's replies to the old one until
    it is probed again. A switch has no such thing, so the lab's does not either.
    """
    changed = False
    mac = bridge_mac(name)
    if not link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge"])
        changed = True
    sysfs = Path("/sys/class/net", name)
    own = (sysfs / "address").read_text().strip() == mac
    if not own or (sysfs / "addr_assign_type").read_text().strip() != NET_ADDR_SET:
        run(["ip", "link", "set", name, "address", mac])
        changed = True
    if owner_of(name) != owner:
        mark(name, owner)
        changed = True
    # Packets from the lab are never routed off the bridge: the air gap holds even if a
    # node adds a default route, whatever the host's global ip_forward says.
    _sysctl(f"net/ipv4/conf/{name}/forwarding", "0")
    _sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
    addresses = run(["ip", "-o", "-4", "addr", "show", "dev", name]).stdout
    if address and f"inet {address} " not in addresses:
        run(["ip", "addr", "add", address, "dev", name])
        changed = True
    flags = run(["ip", "-o", "link", "show", name]).stdout.split("<", 1)[1].split(">", 1)[0]
    if "UP" not in flags.split(","):
        run(["ip", "link", "set", name, "up"])
        changed = True
    return changed


def delete_link(name: str, owner: str | None) -> bool:
    """Delete a link if it exists and owner (None: whoever) made it; deleted?"""
    if link_exists(name) and (owner is None or owner_of(name) == owner):
        run(["ip", "link", "del", name], check=False)
        return True
    return False


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def ensure_tenant(netns: str, veth: str, bridge: str, address: str, owner: str) -> bool:
    """A network namespace on the cloud bridge standing in for a tenant's VPN gateway; changed?"""
    if netns_exists(netns) and link_exists(veth) and owner_of(veth) == owner:
        return False
    delete_tenant(netns, veth, None)
    run(["ip", "netns", "add", netns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    mark(veth, owner)
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    run(["ip", "-n", netns, "addr", "add", address, "dev", "eth0"])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])
    run(["ip", "-n", netns, "link", "set", "eth0", "up"])
    return True


def delete_tenant(netns: str, veth: str, owner: str | None) -> bool:
    """Delete the tenant namespace and its link if owner (None: whoever) made them; changed?"""
    if owner is not None and link_exists(veth) and owner_of(veth) != owner:
        return False
    if owner is not None and not link_exists(veth):
        return False
    changed = False
    if netns_exists(netns):
        run(["ip", "netns", "del", netns], check=False)
        changed = True
    return delete_link(veth, None) or changed


# Bridge port states (linux/if_bridge.h): a disabled port passes no frame either way.
PORT_DISABLED = 0
PORT_FORWARDING = 3


def port_state(link: str) -> int | None:
    """The bridge port state of a host-side link; None when it is on no bridge (or gone)."""
    try:
        return int(Path(f"/sys/class/net/{link}/brport/state").read_text())
    except (OSError, ValueError):
        return None


def set_port_state(link: str, state: int) -> bool:
    """Set a bridge port's state (the link stays up, so the node sees no carrier change); changed?

    A disabled port drops every frame in and out, the host's own included: a switch port that
    died. The node's link keeps its carrier, so systemd-networkd keeps its addresses and the
    services in it go on as if the network had gone quiet: a partition, not an unplugged cable.
    """
    if port_state(link) == state:
        return False
    run(["bridge", "link", "set", "dev", link, "state", str(state)])
    return True
