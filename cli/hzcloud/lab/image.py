"""The Debian 12 base image every lab node boots from, built once and cached by recipe hash."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

from hzcloud.lab.errors import LabError
from hzcloud.lab.system import run

CACHE_DIR = Path("/var/cache/hzcloud/lab")
SUITE = "bookworm"
# Bump when the build steps below change in a way the recipe dict does not show.
BUILD_VERSION = 1
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "iproute2",
    "iputils-ping",
    "procps",
)
# Units that fail or get in the way in a container with no route out: nvme-cli (pulled in by
# Ceph) brings nvmf-autoconnect, which fails here and marks the node degraded; the apt timers
# would grab the dpkg lock in the middle of a deployment.
MASKED_UNITS = (
    "nvmf-autoconnect.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-networkd-wait-online.service",
)
ENABLED_UNITS = {
    "systemd-networkd.service": "multi-user.target.wants",
    "systemd-networkd.socket": "sockets.target.wants",
}


def host_mirrors(apt_dir: Path = Path("/etc/apt")) -> tuple[str, str]:
    """The Debian archive and security archive URIs the host's apt uses."""
    entries: list[tuple[str, list[str]]] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split()))
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        if path.exists():
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], [words[2]]))
    archive = next((u for u, suites in entries if SUITE in suites), None)
    security = next((u for u, suites in entries if f"{SUITE}-security" in suites), None)
    if archive is None:
        raise LabError(
            "cannot tell which Debian mirror the host's apt uses",
            cause=f"no `deb` source for {SUITE} in {apt_dir}",
            fix=f"add the Debian {SUITE} mirror to the host's apt sources",
        )
    if security is None:
        parts = urlsplit(archive)
        security = parts._replace(path=parts.path.rstrip("/") + "-security").geturl()
    return archive.rstrip("/"), security.rstrip("/")


def recipe(archive: str, security: str) -> dict[str, object]:
    """Everything that decides the image's content; its hash names the cached image."""
    sources = (
        f"Types: deb\nURIs: {archive}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    files = {
        "etc/apt/sources.list.d/debian.sources": sources,
        "etc/apt/apt.conf.d/80hzcloud-lab": 'Acquire::Languages "none";\n',
        # Ceph daemons in containers get the same PID after a restart; without a random nonce
        # peers cannot tell restarts apart and PGs stay peering for minutes. The ceph role sets
        # it in /etc/default/ceph (its file); this drop-in (for every ceph-*.service) already
        # holds when the packages first start the daemons, before the role has run.
        "etc/systemd/system/ceph-.service.d/hzcloud-nonce.conf": (
            "[Service]\nEnvironment=CEPH_USE_RANDOM_NONCE=1\n"
        ),
        "etc/ssh/sshd_config.d/hzcloud-lab.conf": (
            "HostKey /etc/ssh/ssh_host_ed25519_key\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UseDNS no\n"
        ),
        "etc/resolv.conf": "# the lab has no DNS: nodes are reached by address\n",
        "etc/machine-id": "",
    }
    return {
        "build_version": BUILD_VERSION,
        "suite": SUITE,
        "variant": "minbase",
        "packages": list(PACKAGES),
        "archive": archive,
        "security": security,
        "files": files,
        "masked": list(MASKED_UNITS),
        "enabled": ENABLED_UNITS,
        "removed": [
            "etc/apt/sources.list",
            # systemd keeps the hostname nspawn gives (the machine name) when there is none
            "etc/hostname",
            "etc/ssh/ssh_host_*",
            "var/cache/apt/archives/*.deb",
            "var/lib/apt/lists/*_*",
        ],
    }


def recipe_hash(spec: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def cached_image(spec: dict[str, object]) -> Path | None:
    root = CACHE_DIR / f"base-{recipe_hash(spec)}" / "rootfs"
    return root if (root.parent / "recipe.json").exists() else None


def ensure_image(spec: dict[str, object], proxy: str | None = None) -> tuple[Path, bool]:
    """The cached image's root for this recipe, building it first if needed; (root, built)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = cached_image(spec)
        if found:
            return found, False
        final = CACHE_DIR / f"base-{recipe_hash(spec)}"
        build = CACHE_DIR / f".build-{recipe_hash(spec)}"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir()
        root = build / "rootfs"
        started = time.monotonic()
        run(
            [
                "debootstrap",
                f"--variant={spec['variant']}",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                str(spec["archive"]),
            ],
            timeout=1800,
            env={"http_proxy": proxy} if proxy else None,
        )
        _customise(root, spec)
        (build / "recipe.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        (build / "build-seconds").write_text(f"{time.monotonic() - started:.1f}\n")
        os.rename(build, final)
        _prune(keep=final)
        return final / "rootfs", True


def _prune(keep: Path) -> None:
    """Drop images of older recipes that no running node has as its lower dir."""
    mounts = Path("/proc/self/mounts").read_text()
    for old in CACHE_DIR.glob("base-*"):
        if old != keep and f"lowerdir={old}/" not in mounts:
            shutil.rmtree(old, ignore_errors=True)


def _customise(root: Path, spec: dict[str, object]) -> None:
    for pattern in spec["removed"]:  # type: ignore[attr-defined]
        for path in root.glob(pattern):
            path.unlink()
    for rel, content in spec["files"].items():  # type: ignore[attr-defined]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    units = root / "etc/systemd/system"
    for unit in spec["masked"]:  # type: ignore[attr-defined]
        link = units / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for unit, wants in spec["enabled"].items():  # type: ignore[attr-defined]
        link = units / wants / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(f"/lib/systemd/system/{unit}")
