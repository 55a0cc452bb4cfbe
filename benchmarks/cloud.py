"""Benchmark: the cloud phase, backups of every layer into the tenant, restore drills, the tunnel.

    python benchmarks/cloud.py [--site /work/labs/ten] [--mib 64] [--no-apply] [--json]

On a lab whose site has a tenant and whose data phase has run: `hzcloud up --only cloud`
(converged or not, as found), `hzcloud backup --now` full then incr (every layer: PostgreSQL,
each etcd's snapshot, each bucket copy; each layer's own seconds), `hzcloud restore --drill`
(every layer's restore seconds and RPO), a point-in-time drill of PostgreSQL to a moment ago,
then MIB MiB (bounded; 60 s at most) from the gateway through the WireGuard tunnel to a sink in
the lab's tenant namespace (a firewall rule on each side lets the benchmark's flow pass while it
runs, and is removed after).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hzcloud import cloudlink
from hzcloud.lab import tenant as lab_tenant
from hzcloud.lab.provider import _load

HZ = [sys.executable, "-m", "hzcloud"]
SINK_PORT = 443  # the tenant's firewall lets the tunnel reach this port only

SINK = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(60)
c, _ = s.accept(); n = 0; t0 = time.monotonic()
while True:
    b = c.recv(1 << 20)
    if not b: break
    n += len(b)
print(n, time.monotonic() - t0)
"""


def hz(*args: str, timeout: float = 3600) -> tuple[float, dict[str, Any]]:
    t0 = time.monotonic()
    res = subprocess.run(
        [*HZ, *args, "--output", "json"], capture_output=True, text=True, timeout=timeout
    )
    seconds = time.monotonic() - t0
    try:
        data: dict[str, Any] = json.loads(res.stdout)
    except ValueError:
        sys.exit(f"hzcloud {' '.join(args)} failed (rc {res.returncode}): {res.stderr[-1500:]}")
    return seconds, data


def on(
    site: Path, host: str, command: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    argv = ["ssh", "-F", str(site / "state" / "ssh_config"), "-o", "BatchMode=yes", host, command]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def tunnel_throughput(site: Path, mib: int) -> float:
    """MiB/s from the gateway to the tenant's end of the tunnel (bounded to mib MiB, 60 s)."""
    names, _ = _load(site)
    gateway = names.spec.gateway
    assert gateway is not None and names.spec.tenant is not None
    net = lab_tenant.tenant_net(names.spec)
    iface = cloudlink.site_interface(names.spec.tenant.name)
    sink = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            names.tenant_netns,
            sys.executable,
            "-c",
            SINK,
            net.tunnel.tenant,
            str(SINK_PORT),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    rule = f'oifname "{iface}" ip daddr {net.tunnel.tenant} tcp dport {SINK_PORT} accept'
    on(site, gateway.name, f"nft insert rule inet hzcloud_link output {rule}")
    try:
        time.sleep(1)
        send = (
            f'head -c {mib}M /dev/zero | timeout 60 python3 -c "import socket,sys; '
            f"s=socket.create_connection(('{net.tunnel.tenant}', {SINK_PORT})); "
            "[s.sendall(b) for b in iter(lambda: sys.stdin.buffer.read(1<<20), b'')]; s.close()\""
        )
        res = on(site, gateway.name, send, timeout=90)
        out, _ = sink.communicate(timeout=90)
        if res.returncode != 0 or not out.strip():
            sys.exit(f"tunnel transfer failed: {res.stderr.strip()}")
        size, seconds = out.split()
        return int(size) / (1 << 20) / float(seconds)
    finally:
        sink.kill()
        handles = on(site, gateway.name, "nft -a list chain inet hzcloud_link output").stdout
        for line in handles.splitlines():
            if f"ip daddr {net.tunnel.tenant} tcp dport {SINK_PORT}" in line and "# handle" in line:
                handle = line.rsplit("# handle", 1)[1].strip()
                on(site, gateway.name, f"nft delete rule inet hzcloud_link output handle {handle}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("/work/labs/ten"))
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--no-apply", action="store_true", help="skip the cloud phase")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    site = args.site.resolve()
    figures: dict[str, Any] = {}
    if not args.no_apply:
        seconds, data = hz("up", str(site), "--only", "cloud")
        cloud = next(p for p in data["phases"] if p["name"] == "cloud")
        figures["cloud_phase_seconds"] = round(seconds, 1)
        figures["cloud_phase_changed"] = cloud["changed"]
    for kind in ("full", "incr"):
        seconds, done = hz("backup", str(site), "--now", "--type", kind)
        figures[f"backup_{kind}_seconds"] = round(seconds, 1)
        for layer in done["layers"]:  # the layers run at the same time, each on its node
            what = kind if layer["name"] == "postgres" else f"beside {kind}"
            figures[f"  {layer['name']} ({what})"] = (
                layer["seconds"] if layer["ok"] else f"FAILED: {layer['error'][-300:]}"
            )
    seconds, drill = hz("restore", str(site), "--drill")
    figures["restore_drill_seconds"] = round(seconds, 1)
    figures["restore_drill_passed"] = drill["passed"]
    for layer in drill["layers"]:
        figures[f"  {layer['name']} restore"] = (
            f"{layer['seconds']} s, RPO {layer['rpo_seconds']} s"
            + ("" if layer["passed"] else f" FAILED: {layer['detail'][-300:]}")
        )
    figures["restore_rpo_seconds"] = drill["layers"][0]["rpo_seconds"]
    moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
    seconds, pitr = hz("restore", str(site), "--drill", "--to", moment)
    figures["restore_to_time_seconds"] = round(seconds, 1)
    figures["restore_to_time_passed"] = pitr["passed"]
    figures["tunnel_mib_per_second"] = round(tunnel_throughput(site, args.mib), 1)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:<34} {value}")


if __name__ == "__main__":
    main()
