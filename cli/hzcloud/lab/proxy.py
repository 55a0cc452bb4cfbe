"""apt-cacher-ng on the management bridge: the lab's only way to packages."""

from __future__ import annotations

import pwd
import shutil
import socket
import time
import urllib.request
from pathlib import Path

from hzcloud.lab.errors import LabError
from hzcloud.lab.system import pid_alive, spawn_detached

CACHE_ROOT = Path("/var/cache/hzcloud")
PORT = 3142
USER = "apt-cacher-ng"


def cache_dir(code: str) -> Path:
    """The package cache of one lab (by site code); it survives `down`."""
    # One cache per lab: apt-cacher-ng locks nothing across processes, so two labs' proxies
    # writing the same index or package file at once could corrupt it for both.
    return CACHE_ROOT / f"apt-cacher-ng-{code}"


def config(conf_dir: Path, cache: Path, address: str, archive: str, security: str) -> str:
    # No Debian backend of the package's own: its default mirror name need not resolve here
    # (every request 503s). Both proxy mode (Acquire::http::Proxy with the archive's URL) and
    # mirror mode (http://<bridge>:3142/debian) end at the mirrors the host's apt uses.
    return (
        f"CacheDir: {cache}\n"
        f"LogDir: {conf_dir / 'log'}\n"
        f"SocketPath: {conf_dir / 'run' / 'socket'}\n"
        "SupportDir: /usr/lib/apt-cacher-ng\n"
        f"BindAddress: {address}\n"
        f"Port: {PORT}\n"
        "ForeGround: 1\n"
        "ExThreshold: 4\n"
        # Index files (InRelease) stay fresh for an hour: eight nodes asking for the same stale
        # index in the same second make apt-cacher-ng 3.7 fail to move the old copy aside
        # ("Failure to move file ... out of the way") and drop the connection, and apt then
        # waits forever. With the indexes fetched once by `warm` and fresh for the lab's run,
        # the nodes' updates are answered from the cache. The by-hash files they name never change.
        "FreshIndexMaxAge: 3600\n"
        f"Remap-debrep: /debian ; {archive}/\n"
        f"Remap-secdeb: /debian-security ; {security}/\n"
    )


def _owner(path: Path) -> None:
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        return
    shutil.chown(path, user.pw_uid, user.pw_gid)


def listening(address: str) -> bool:
    try:
        with socket.create_connection((address, PORT), timeout=0.5):
            return True
    except OSError:
        return False


def start(conf_dir: Path, cache: Path, address: str, archive: str, security: str) -> int:
    """Start the proxy detached; returns its PID once it accepts connections."""
    for sub in (conf_dir, conf_dir / "log", conf_dir / "run"):
        sub.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    for owned in (cache, conf_dir / "log", conf_dir / "run"):
        _owner(owned)
    (conf_dir / "acng.conf").write_text(config(conf_dir, cache, address, archive, security))
    try:
        user: str | None = pwd.getpwnam(USER).pw_name
    except KeyError:
        user = None
    log = conf_dir / "log" / "stdout.log"
    pid = spawn_detached(["/usr/sbin/apt-cacher-ng", "-c", str(conf_dir)], log, user=user)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if listening(address):
            return pid
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    raise LabError(
        f"apt-cacher-ng did not start on {address}:{PORT}",
        cause=log.read_text()[-1000:].strip(),
        fix="apt-get install apt-cacher-ng; check that port 3142 is free",
    )


def warm(address: str, archive: str, security: str, suite: str) -> None:
    """Fetch the suites' InRelease files through the proxy one at a time (see `config`)."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://{address}:{PORT}"})
    )
    urls = [f"{archive}/dists/{suite}/InRelease", f"{archive}/dists/{suite}-updates/InRelease",
            f"{security}/dists/{suite}-security/InRelease"]  # fmt: skip
    for url in urls:
        try:
            with opener.open(url, timeout=60) as resp:
                resp.read()
        except OSError as exc:
            raise LabError(
                f"the lab's package proxy could not fetch {url}",
                cause=str(exc),
                fix="check that the host's apt reaches its Debian mirror (apt-get update on the host)",
            ) from exc


def running(pid: int | None, conf_dir: Path, address: str) -> bool:
    return pid_alive(pid, str(conf_dir)) and listening(address)
