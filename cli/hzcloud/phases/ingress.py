"""ingress: the way in on the gateway node(s) — HAProxy + keepalived (role way_in).

A phase of its own rather than part of `kubernetes`: it runs on other servers, needs nothing of
the cluster to be configured (only the plan's NodePorts), and so runs beside the cluster's
bring-up instead of after it. See hzcloud.wayin for the routes and the choice of HAProxy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hzcloud.outcome import Check
from hzcloud.phases import CheckContext, Endpoint, Phase, Port
from hzcloud.pki import ca_cert_path
from hzcloud.wayin import HTTPS_PORT, ingress_address, routes

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.plan import Plan


def _wanted(site: Site) -> bool:
    return site.services.kubernetes.enabled


def _endpoints(site: Site, plan: Plan, site_dir: Path) -> list[Endpoint]:
    address = ingress_address(site, plan)
    found = routes(site, plan, site_dir)
    if not address or not found:
        return []
    hosts = sorted({r.host for r in found})
    return [
        Endpoint(
            "ingress",
            f"https://{address}:{HTTPS_PORT}",
            str(ca_cert_path(site_dir)),
            f"names: {', '.join(hosts)} (resolve them to {address})",
        )
    ]


# Asked from a Kubernetes server, like a browser on the hospital network: TLS verified against
# the site CA (given inline), by host name (SNI), to the way in's address.
_PROBE = """
import socket, ssl, sys, urllib.error, urllib.request
host, address, ca = sys.argv[1], sys.argv[2], sys.stdin.read()
ctx = ssl.create_default_context(cadata=ca)
real = socket.create_connection
socket.create_connection = lambda addr, *a, **k: real((address, addr[1]), *a, **k)
try:
    body = urllib.request.urlopen(f"https://{host}/", context=ctx, timeout=5).read().decode()
except urllib.error.HTTPError as exc:  # an answer too: a clinical service with auth on says 401
    body = f"HTTP {exc.code}"
print(body.strip())
"""


def _checks(ctx: CheckContext) -> list[Check]:
    """Each HTTPS route's host answers on the way in with a certificate of the site CA."""
    plan = ctx.plan
    servers = plan.hosts("k8s-server")
    site, site_dir = ctx.site, ctx.site_dir
    if not servers or site is None or site_dir is None:
        return []
    address = ingress_address(site, plan)
    ca = ca_cert_path(site_dir).read_text()
    first = servers[0].name
    out: list[Check] = []
    for r in routes(site, plan, site_dir):
        if r.kind != "https" or (r.name == "echo" and "platform" not in ctx.deployed):
            continue
        if r.name != "echo" and "bundle" not in ctx.deployed:
            continue  # a clinical service's route answers once the bundle phase has run
        res = ctx.hosts[first].run(
            f"python3 -c {_quote(_PROBE)} {r.host} {address} <<'EOF'\n{ca}EOF"
        )
        answer = (res.stdout or res.stderr).strip().splitlines()
        out.append(
            Check(
                f"the way in answers for {r.host} with the site CA",
                first,
                res.rc == 0 and (r.name != "echo" or res.stdout.startswith("hzcloud-echo ")),
                f"https://{r.host}/ via {address} -> {(answer[-1] if answer else '')[:160]}",
            )
        )
    return out


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


PHASE = Phase(
    name="ingress",
    description="the way in on the gateway: HTTPS by host name (site CA) and TCP entry points",
    executor="ansible",
    depends_on=("base",),
    ports=(Port("way_in_https", HTTPS_PORT, "gateway", "any", owners=("haproxy",)),),
    wanted=_wanted,
    endpoints=_endpoints,
    checks=_checks,
)
