"""The lab's emulated public cloud: a network namespace holding the tenant's VPN endpoint and S3.

On the cloud bridge (the lab's stand-in for the internet) the namespace has the tenant's public
`endpoint` address; behind it, the tenant's private `subnet` holds the S3/IAM API (moto_server
behind stunnel4, with a certificate from the lab's own CA for the host name of the site's `api:`
URL) at the subnet's tenth address. The site reaches that subnet only through WireGuard from its
gateway (wireguard-go, an interface name of this lab's own); nftables in the namespace lets in
WireGuard from anywhere, and the API only from the tunnel and from the host (the operator's
workstation, where Pulumi makes the bucket as it would against a real cloud's API).

Made once per site and kept in <site>/state/lab/tenant/ (like the nodes' host keys): the lab CA
and the endpoint's WireGuard key. moto keeps its data in memory: `lab down` ends the cloud with
its buckets; the next `up` starts an empty one and writes new operator keys.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hzcloud import cloudlink
from hzcloud.lab.errors import LabError
from hzcloud.lab.spec import LabSpec
from hzcloud.lab.system import command_line, find_pids, pid_alive, run, spawn_detached

API_HOST_INDEX = 10  # the S3 API's address in the tenant subnet
MOTO_PORT = 5000  # moto's plain HTTP port, on the namespace's loopback only
HTTPS_PORT = 443
HOSTS_FILE = Path("/etc/hosts")
# moto checks keys only after its first N requests: the lab makes the operator's in those
BOOTSTRAP_REQUESTS = 3


@dataclass(frozen=True)
class TenantNet:
    """The emulated tenant's addresses, all derived from the site's tenant entry."""

    public: ipaddress.IPv4Network  # the cloud bridge: the /24 around the endpoint
    endpoint: str
    host: str  # the host's (operator's) address on the cloud bridge
    gateway_public: str | None  # the gateway node's address on the cloud bridge
    subnet: str
    api_address: str
    api_host: str
    tunnel: cloudlink.TunnelAddresses
    interface: str


def tenant_net(spec: LabSpec) -> TenantNet:
    assert spec.tenant is not None
    t = spec.tenant
    public = ipaddress.IPv4Network(f"{t.endpoint}/24", strict=False)
    gateway_public = None
    if spec.gateway is not None:
        host = int(ipaddress.ip_address(spec.gateway.address)) & int(public.hostmask)
        gateway_public = str(public.network_address + host)
    taken = {t.endpoint, gateway_public}
    host_address = next(str(a) for a in public.hosts() if str(a) not in taken)
    subnet = ipaddress.ip_network(t.subnet)
    return TenantNet(
        public=public,
        endpoint=t.endpoint,
        host=host_address,
        gateway_public=gateway_public,
        subnet=t.subnet,
        api_address=str(subnet.network_address + API_HOST_INDEX),
        api_host=(urlsplit(t.api).hostname if t.api else None) or f"s3.{t.name}.{spec.code}.lab",
        tunnel=cloudlink.tunnel_addresses(t.subnet),
        interface=cloudlink.endpoint_interface(spec.code, t.name),
    )


def _ns(netns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _ensure_ca_and_cert(folder: Path, net: TenantNet, code: str) -> bool:
    """The lab CA (made once) and the API's certificate for its host name; changed?"""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key_file, ca_file = folder / "ca.key", folder / "ca.crt"
    cert_file, key_file = folder / "api.crt", folder / "api.key"
    pem = serialization.Encoding.PEM
    now = datetime.datetime.now(datetime.UTC)
    changed = False
    if not ca_file.exists() or not ca_key_file.exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hzcloud lab {code} cloud CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key_pem = ca_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(ca_key_file, key_pem)
        ca_file.write_bytes(ca.public_bytes(pem))
        cert_file.unlink(missing_ok=True)
        changed = True
    if cert_file.exists() and key_file.exists():
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if {net.api_host, net.api_address} <= set(sans.get_values_for_type(x509.DNSName)):
            return changed
    ca_key_loaded = serialization.load_pem_private_key(ca_key_file.read_bytes(), None)
    assert isinstance(ca_key_loaded, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, net.api_host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(net.api_host),
                    # pgBackRest, told to connect to the address (repo-storage-host), matches
                    # it against DNS names only
                    x509.DNSName(net.api_address),
                    x509.IPAddress(ipaddress.ip_address(net.api_address)),
                ]
            ),
            critical=False,
        )
        .sign(ca_key_loaded, hashes.SHA256())
    )
    _write_private(
        key_file,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    cert_file.write_bytes(cert.public_bytes(pem))
    return True


def _hosts_line(net: TenantNet, owner: str) -> str:
    return f"{net.api_address} {net.api_host}  # hzcloud-lab {owner}\n"


def ensure_hosts_entry(net: TenantNet, owner: str) -> bool:
    """The API's name on the host (the operator's resolver); one marked line per lab."""
    lines = HOSTS_FILE.read_text().splitlines(keepends=True)
    mine = _hosts_line(net, owner)
    if mine in lines:
        return False
    kept = [ln for ln in lines if not ln.rstrip().endswith(f"# hzcloud-lab {owner}")]
    HOSTS_FILE.write_text("".join(kept) + mine)
    return True


def remove_hosts_entry(owner: str) -> bool:
    lines = HOSTS_FILE.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if not ln.rstrip().endswith(f"# hzcloud-lab {owner}")]
    if kept == lines:
        return False
    HOSTS_FILE.write_text("".join(kept))
    return True


FIREWALL = """table inet hzcloud_tenant
delete table inet hzcloud_tenant
table inet hzcloud_tenant {{
  chain input {{
    type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
    icmp type echo-request accept
    iifname "eth0" udp dport {wg_port} accept
    iifname "eth0" ip saddr {host} tcp dport {https} accept
    iifname "{wg}" tcp dport {https} accept
  }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
  }}
}}
"""


def _listening(address: str, port: int, netns: str | None = None) -> bool:
    if netns is None:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return True
        except OSError:
            return False
    probe = f"import socket; socket.create_connection(('{address}', {port}), timeout=0.5)"
    return run(_ns(netns, sys.executable, "-c", probe), check=False).returncode == 0


def _wait(what: str, ready: object, log: Path, timeout: float = 30) -> None:
    assert callable(ready)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    text = log.read_text()[-1500:] if log.exists() else ""
    raise LabError(f"the emulated tenant's {what} did not start", cause=text.strip())


def _tool(name: str, package: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/usr/sbin")
    if not found:
        raise LabError(
            f"{name} is not installed (the lab's emulated tenant needs it)",
            fix=f"{package} (scripts/setup-host installs the host's)",
        )
    return found


def ensure(
    site: Path,
    spec: LabSpec,
    netns: str,
    cloud_bridge: str,
    state: dict[str, object],
    owner: str,
) -> tuple[bool, dict[str, object]]:
    """WireGuard endpoint, S3 API behind TLS and firewall in the tenant namespace; changed?

    `state` holds the PIDs recorded last time; the new record is returned.
    """
    assert spec.tenant is not None
    net = tenant_net(spec)
    folder = site / "state" / "lab" / "tenant"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed = _ensure_ca_and_cert(folder, net, spec.code)
    stunnel_pid = state.get("stunnel_pid")
    if changed and isinstance(stunnel_pid, int) and pid_alive(stunnel_pid, "stunnel"):
        run(["kill", str(stunnel_pid)], check=False)  # it reads its certificate at start

    # what the site is given, as an operator copies it from the cloud's console
    link_dir = cloudlink.cloud_dir(site)
    link_dir.mkdir(mode=0o700, exist_ok=True)
    ca_copy = cloudlink.ca_path(site, spec.tenant.name)
    if not ca_copy.exists() or ca_copy.read_bytes() != (folder / "ca.crt").read_bytes():
        ca_copy.write_bytes((folder / "ca.crt").read_bytes())
        changed = True
    wg_key_file = folder / "wg.key"
    if not wg_key_file.exists():
        _write_private(wg_key_file, (cloudlink.new_private_key() + "\n").encode())
    endpoint_pub = cloudlink.public_key(wg_key_file.read_text().strip()) + "\n"
    pub_file = cloudlink.endpoint_pub_path(site, spec.tenant.name)
    if not pub_file.exists() or pub_file.read_text() != endpoint_pub:
        pub_file.write_text(endpoint_pub)
        changed = True
    site_pub = cloudlink.ensure_site_key(site, spec.tenant.name)

    # addresses: the API on the namespace's loopback, the host's way to it on the cloud bridge
    addrs = run(["ip", "-n", netns, "-o", "-4", "addr", "show", "dev", "lo"]).stdout
    if f"inet {net.api_address}/32" not in addrs:
        run(["ip", "-n", netns, "addr", "add", f"{net.api_address}/32", "dev", "lo"])
        changed = True
    route = run(["ip", "-o", "route", "show", net.subnet]).stdout
    if f"via {net.endpoint} dev {cloud_bridge}" not in route:
        run(["ip", "route", "replace", net.subnet, "via", net.endpoint, "dev", cloud_bridge])
        changed = True
    changed |= ensure_hosts_entry(net, owner)
    rules = FIREWALL.format(
        wg_port=cloudlink.WG_PORT, host=net.host, https=HTTPS_PORT, wg=net.interface
    )
    (folder / "nftables.conf").write_text(rules)
    run(_ns(netns, "nft", "-f", str(folder / "nftables.conf")))

    record = dict(state)
    changed |= _ensure_wireguard(folder, net, netns, wg_key_file, site_pub, record)
    changed |= _ensure_api(site, folder, net, netns, record)
    return changed, record


def wg_socket(interface: str) -> Path:
    """Where wireguard-go takes `wg`'s commands for an interface."""
    return Path("/var/run/wireguard") / f"{interface}.sock"


def _accepts(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        try:
            client.connect(str(sock))
        except OSError:
            return False
    return True


def _ensure_wireguard(
    folder: Path,
    net: TenantNet,
    netns: str,
    key_file: Path,
    site_pub: str,
    record: dict[str, object],
) -> bool:
    pid = record.get("wireguard_pid")
    needle = f"wireguard-go -f {net.interface}"
    conf = folder / "wg.conf"
    text = (
        "[Interface]\n"
        f"PrivateKey = {key_file.read_text().strip()}\n"
        f"ListenPort = {cloudlink.WG_PORT}\n\n"
        "[Peer]\n"
        f"PublicKey = {site_pub}\n"
        f"AllowedIPs = {net.tunnel.gateway}/32\n"
    )
    fresh = not (isinstance(pid, int) and pid_alive(pid, needle))
    if not fresh and conf.exists() and conf.read_text() == text:
        return False
    _write_private(conf, text.encode())
    if fresh:
        # the interface name is this lab's alone: whatever runs under it is a leftover of ours
        for stale in find_pids(needle):
            run(["kill", "-9", str(stale)], check=False)
        log = folder / "wireguard.log"
        wg_go = _tool("wireguard-go", "apt-get install wireguard-go")
        _tool("wg", "apt-get install wireguard-tools")
        sock = wg_socket(net.interface)
        # A killed wireguard-go leaves its socket behind; `wg` would find it, be refused, and
        # try the kernel's WireGuard (none here): "Unable to modify interface".
        sock.unlink(missing_ok=True)
        spawn_detached(_ns(netns, wg_go, "-f", net.interface), log)
        _wait("WireGuard endpoint", lambda: _accepts(sock) and find_pids(needle), log)
        # wireguard-go starts itself again in the foreground: the PID is the one running now
        record["wireguard_pid"] = find_pids(needle)[0]
    run(_ns(netns, "wg", "setconf", net.interface, str(conf)))
    addr = f"{net.tunnel.tenant}/{net.tunnel.prefix}"
    run(["ip", "-n", netns, "addr", "replace", addr, "dev", net.interface])
    run(["ip", "-n", netns, "link", "set", net.interface, "up"])
    return True


def _ensure_api(
    site: Path, folder: Path, net: TenantNet, netns: str, record: dict[str, object]
) -> bool:
    changed = False
    moto_pid = record.get("moto_pid")
    if not (isinstance(moto_pid, int) and pid_alive(moto_pid, "moto_server")):
        moto = _tool("moto_server", "pip install 'hzcloud[test]' (moto[server])")
        log = folder / "moto.log"
        record["moto_pid"] = spawn_detached(
            _ns(
                netns,
                "env",
                f"INITIAL_NO_AUTH_ACTION_COUNT={BOOTSTRAP_REQUESTS}",
                # else moto reads the API's host name as a bucket name (virtual-host style)
                f"MOTO_S3_CUSTOM_ENDPOINTS=https://{net.api_host}",
                moto,
                "-H",
                "127.0.0.1",
                "-p",
                str(MOTO_PORT),
            ),
            log,
        )
        _wait("S3 API (moto)", lambda: _listening("127.0.0.1", MOTO_PORT, netns), log, 60)
        record.pop("operator", None)
        changed = True
    conf = folder / "stunnel.conf"
    stunnel_pid = record.get("stunnel_pid")
    if not (isinstance(stunnel_pid, int) and pid_alive(stunnel_pid, str(conf))):
        stunnel = _tool("stunnel4", "apt-get install stunnel4")
        conf.write_text(
            "foreground = yes\npid =\n\n[s3]\n"
            f"accept = {net.api_address}:{HTTPS_PORT}\n"
            f"connect = 127.0.0.1:{MOTO_PORT}\n"
            f"cert = {folder / 'api.crt'}\nkey = {folder / 'api.key'}\n"
        )
        log = folder / "stunnel.log"
        record["stunnel_pid"] = spawn_detached(_ns(netns, stunnel, str(conf)), log)
        _wait("TLS front (stunnel4)", lambda: _listening(net.api_address, HTTPS_PORT), log)
        changed = True
    if not record.get("operator"):
        _bootstrap_operator(site, folder, net)
        record["operator"] = True
        changed = True
    return changed


def _bootstrap_operator(site: Path, folder: Path, net: TenantNet) -> None:
    """The operator's key with every right, made in moto's first requests (written 0600)."""
    import boto3
    from botocore.config import Config

    url = f"https://{net.api_host}"
    ctx_ca = str(folder / "ca.crt")
    cfg = Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30)

    def iam(key: tuple[str, str]) -> object:
        return boto3.client(
            "iam",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            verify=ctx_ca,
            config=cfg,
        )

    client = iam(("bootstrap", "bootstrap"))
    client.create_user(UserName="operator")  # type: ignore[attr-defined]
    client.put_user_policy(  # type: ignore[attr-defined]
        UserName="operator",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    key = client.create_access_key(UserName="operator")["AccessKey"]  # type: ignore[attr-defined]
    text = json.dumps({"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]})
    _write_private(folder / "operator.json", (text + "\n").encode())


def operator_keys(site: Path) -> tuple[str, str]:
    """The emulated cloud's operator key (what a real cloud's console would hand out)."""
    data = json.loads((site / "state" / "lab" / "tenant" / "operator.json").read_text())
    return str(data["access_key"]), str(data["secret_key"])


def stop(netns: str, owner: str) -> bool:
    """End every process in the tenant namespace and the host's name for its API; changed?"""
    changed = remove_hosts_entry(owner)
    if not Path("/run/netns", netns).exists():
        return changed
    pids = run(["ip", "netns", "pids", netns], check=False).stdout.split()
    sockets = []
    for pid in pids:
        argv = command_line(pid)
        if len(argv) > 2 and argv[0].endswith("wireguard-go") and argv[1] == "-f":
            sockets.append(wg_socket(argv[2]))
        run(["kill", "-9", pid], check=False)
        changed = True
    for sock in sockets:  # SIGKILL leaves them; `wg` would try them first
        sock.unlink(missing_ok=True)
    return changed


def tls_context(site: Path) -> ssl.SSLContext:
    """A client context trusting the lab's cloud CA (for tests and benchmarks)."""
    return ssl.create_default_context(cafile=str(site / "state" / "lab" / "tenant" / "ca.crt"))
