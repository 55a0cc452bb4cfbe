"""The site model: what a hospital wants, validated before any host is touched."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import replace
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from hzcloud.errors import Problem, SiteError
from hzcloud.siteyaml import KeyPath, Loaded, dotted, field_problem, key_path, load_yaml

SITE_FILE = "site.yaml"
MIN_SERVERS = 3
MAX_SERVERS = 64

Hostname = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")]
# a DNS domain of two labels or more, lowercase (hospital.domain)
Domain = Annotated[
    str,
    StringConstraints(
        min_length=4,
        max_length=200,
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$",
    ),
]


def _text_only(value: Any) -> Any:
    # YAML reads `address: 172818443` as an int, which ipaddress would take as 10.77.0.11:
    # an address is only ever written as text.
    if isinstance(value, str | IPv4Address | IPv4Network):
        return value
    raise PydanticCustomError(
        "address_text", "an address or network is written dotted, not as a number"
    )


def _device(value: str) -> str:
    # /dev/../etc/passwd matches a character pattern; normalised it is not a device.
    parts = value.split("/")
    if ".." in parts:
        raise PydanticCustomError("disk_path", "'..' is not allowed in a disk path")
    normal = posixpath.normpath(value)
    if not normal.startswith("/dev/") or normal == "/dev/":
        raise PydanticCustomError("disk_path", "a disk path names a device under /dev/")
    return normal


DevicePath = Annotated[
    str, StringConstraints(pattern=r"^/dev/[A-Za-z0-9/_.-]+$"), AfterValidator(_device)
]
Address = Annotated[IPv4Address, BeforeValidator(_text_only)]
Network = Annotated[IPv4Network, BeforeValidator(_text_only)]


class Role(StrEnum):
    """Roles the planner places; also the vocabulary of pins in site.yaml."""

    CEPH_MON = "ceph-mon"
    CEPH_MGR = "ceph-mgr"
    CEPH_OSD = "ceph-osd"
    CEPH_RGW = "ceph-rgw"
    ETCD = "etcd"
    POSTGRES = "postgres"
    REDIS = "redis"
    REDIS_SENTINEL = "redis-sentinel"
    K8S_SERVER = "k8s-server"
    K8S_AGENT = "k8s-agent"
    GATEWAY = "gateway"


class BundleService(StrEnum):
    """The names the shipped default bundle offers (bundles/default/bundle.yaml `offers`).

    site.yaml's bundle.services is checked against the bundle the site installs from, not this
    list; it stays for fleet.yaml and the planner's tests, and a test keeps it equal to the
    default bundle's offers.
    """

    PATIENT_INDEX = "patient-index"
    CODES = "codes"
    RECORDS = "records"
    ORDERS = "orders"
    IMAGING = "imaging"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hospital(_Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)]
    code: Code
    # the DNS domain of the site's names: pods resolve postgres.<domain>, redis.<domain>,
    # s3.<domain>; the way in serves https://<service>.<domain>/; none: <code>.internal
    domain: Domain | None = None

    @property
    def site_domain(self) -> str:
        return self.domain or f"{self.code}.internal"


class Ssh(_Model):
    user: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    key: Annotated[str, StringConstraints(min_length=1)] = "~/.ssh/id_ed25519"
    port: Annotated[int, Field(ge=1, le=65535)] = 22


class Server(_Model):
    name: Hostname
    address: Address
    disks: list[DevicePath] = []
    roles: list[Role] = []


class Networks(_Model):
    management: Network
    postgres_vip: Address | None = None
    kubernetes_vip: Address | None = None
    # the way in: HTTPS and TCP entry points for the hospital network on the gateway node(s)
    # (keepalived moves it); none: the first gateway's own address
    ingress_vip: Address | None = None
    pod_cidr: Network = IPv4Network("10.42.0.0/16")
    service_cidr: Network = IPv4Network("10.43.0.0/16")
    ntp: list[str] = []
    dns: list[Address] = []
    mirror: AnyHttpUrl | None = None


class Ceph(_Model):
    enabled: bool = True
    replicas: Annotated[int, Field(ge=1, le=7)] = 3
    min_size: Annotated[int, Field(ge=1, le=7)] = 2
    mons: Annotated[int, Field(ge=1, le=7)] = 3
    # free space (%) on a mon's disk below which Ceph warns; above 5, where mons stop
    mon_data_avail_warn: Annotated[int, Field(ge=6, le=50)] = 15


class Postgres(_Model):
    enabled: bool = True
    version: Literal[15] = 15
    synchronous: bool = True


class Redis(_Model):
    enabled: bool = True


class Kubernetes(_Model):
    enabled: bool = True
    # Upstream Kubernetes, built into the site's artifacts folder (scripts/build-artifacts).
    version: Annotated[str, StringConstraints(pattern=r"^v\d+\.\d+\.\d+$")] = "v1.37.2"
    # free space (%) of a node's disk below which the kubelet evicts pods and deletes images
    # no pod uses: here they cannot be pulled again (the next `up` re-imports them)
    disk_reserve_percent: Annotated[int, Field(ge=1, le=50)] = 10


class Services(_Model):
    ceph: Ceph = Ceph()
    postgres: Postgres = Postgres()
    redis: Redis = Redis()
    kubernetes: Kubernetes = Kubernetes()


def _credentials_ref(value: Any) -> Any:
    # The keys themselves belong in secrets.yaml (0600, never in git): site.yaml only names them.
    if isinstance(value, str):
        return value
    raise PydanticCustomError(
        "credentials_ref",
        "credentials are named here, not written here (got {shown})",
        {"shown": "a mapping" if isinstance(value, dict) else type(value).__name__},
    )


# S3 and OSS both: 3-63 of [a-z0-9-], no dots (a dotted name breaks virtual-host TLS).
BucketName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]
CredentialsRef = Annotated[
    str,
    BeforeValidator(_credentials_ref),
    StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$"),
]
TenantProvider = Literal["s3-compatible", "aws", "alicloud", "azure"]


class Tenant(_Model):
    """A public-cloud tenant holding the site's off-site backups, linked by WireGuard."""

    name: Hostname
    provider: TenantProvider
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    # the tenant's public VPN (WireGuard) endpoint the gateway dials
    endpoint: Address
    # the S3/API endpoint; none: the provider's public one for the region (aws, alicloud)
    api: AnyHttpUrl | None = None
    # prefix of the operator's keys in secrets.yaml: <credentials>_access_key, _secret_key
    credentials: CredentialsRef | None = None
    # the tenant's private network, reached only through the link
    subnet: Network
    # the backup bucket; none: hz-<site code>-backup
    bucket: BucketName | None = None
    # the site's own Ceph RGW buckets copied into the tenant besides the bundle's (imaging)
    sync_buckets: list[BucketName] = []

    @property
    def credentials_ref(self) -> str:
        return self.credentials or "tenant_" + self.name.replace("-", "_")

    @property
    def secret_keys(self) -> tuple[str, str]:
        """The two secrets.yaml keys the operator provides for this tenant."""
        return (f"{self.credentials_ref}_access_key", f"{self.credentials_ref}_secret_key")

    def bucket_name(self, code: str) -> str:
        return self.bucket or f"hz-{code}-backup"


class Cloud(_Model):
    tenants: list[Tenant] = []


class Bundle(_Model):
    # none unless the site picks them: a bundle phase only where services are listed; each a name
    # the bundle's bundle.yaml offers (checked against it in parse_site)
    services: list[Code] = []
    # a bundle folder relative to the site folder; none: the bundle shipped with hzcloud
    folder: Annotated[str, StringConstraints(min_length=1)] | None = None


class Site(_Model):
    hospital: Hospital
    ssh: Ssh = Ssh()
    servers: list[Server]
    networks: Networks
    services: Services = Services()
    cloud: Cloud = Cloud()
    bundle: Bundle = Bundle()
    # Release artifacts (Kubernetes, etcd, pulumi and its plugins, images), relative to the site folder.
    artifacts: Annotated[str, StringConstraints(min_length=1)] = "artifacts"

    @property
    def storage_servers(self) -> list[Server]:
        return [s for s in self.servers if s.disks]

    def enabled(self, role: Role) -> bool:
        """Whether the service a role belongs to is switched on."""
        svc = self.services
        if role in (Role.CEPH_MON, Role.CEPH_MGR, Role.CEPH_OSD, Role.CEPH_RGW):
            return svc.ceph.enabled
        if role in (Role.ETCD, Role.POSTGRES):
            return svc.postgres.enabled
        if role in (Role.REDIS, Role.REDIS_SENTINEL):
            return svc.redis.enabled
        if role in (Role.K8S_SERVER, Role.K8S_AGENT):
            return svc.kubernetes.enabled
        return True


# Fixed group sizes; a pin beyond the size is a mistake the operator must hear about.
QUORUM_SIZE = {
    Role.ETCD: 3,
    Role.POSTGRES: 3,
    Role.REDIS: 3,
    Role.REDIS_SENTINEL: 3,
    Role.K8S_SERVER: 3,
    Role.CEPH_MGR: 2,
    Role.CEPH_RGW: 2,
    Role.GATEWAY: 1,
}

# Roles that always sit with another group, on the first servers of it.
FOLLOWS = {
    Role.ETCD: Role.POSTGRES,
    Role.REDIS_SENTINEL: Role.REDIS,
    Role.CEPH_MGR: Role.CEPH_MON,
}


def site_file(path: Path) -> Path:
    """The site.yaml named by path: the file itself or the folder holding it."""
    return path / SITE_FILE if path.is_dir() else path


def load_site(path: Path) -> Site:
    """Load and validate a site; raise SiteError listing every problem at once."""
    file = site_file(path)
    loaded = load_yaml(file)
    return parse_site(loaded, file.name, file.parent)


def parse_site(loaded: Loaded, filename: str = SITE_FILE, folder: Path | None = None) -> Site:
    """Validate parsed YAML as a Site; field errors first, then cross-field rules.

    folder is the site folder, for a bundle.folder relative to it (default: the current folder).
    """
    try:
        site = Site.model_validate(loaded.data)
    except ValidationError as exc:
        raise SiteError([_field_problem(err, loaded, filename) for err in exc.errors()]) from None
    problems = [
        Problem(filename, loaded.line_of(path), dotted(path), what, fix)
        for path, what, fix in cross_field_problems(site) + _bundle_problems(site, folder)
    ]
    if problems:
        raise SiteError(problems)
    return site


_FIXES = {
    "missing": "add this key",
    "extra_forbidden": "remove it, or check its spelling against inventories/sample-hospital/site.yaml",
    "ip_v4_address": "write an IPv4 address such as 10.20.0.11",
    "ip_v4_network": "write a network in CIDR form such as 10.20.0.0/24 (host bits zero)",
    "string_pattern_mismatch": "use lowercase letters, digits and '-' only",
    "literal_error": "use one of the allowed values",
    "enum": "use one of the allowed values",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "list_type": "write a list, e.g. [a, b] or one '- item' per line",
    "dict_type": "write a mapping of keys",
    "model_type": "write a mapping of keys",
    "url_parsing": "write a URL such as http://10.20.0.5:3142",
    "url_scheme": "write an http:// or https:// URL",
    "greater_than_equal": "raise the value",
    "address_text": "write it dotted, e.g. 10.20.0.11 or 10.20.0.0/24",
    "disk_path": "write the device path, e.g. /dev/sdb",
    "less_than_equal": "lower the value",
    "credentials_ref": "name the keys instead, e.g. credentials: tenant_dr, and put "
    "tenant_dr_access_key and tenant_dr_secret_key in secrets.yaml (mode 0600)",
}

_PATTERN_FIXES = {
    "name": "use a hostname: lowercase letters, digits and '-', at most 63 characters",
    "code": "use a short code: lowercase letters, digits and '-', e.g. stgeorge",
    "user": "use a Unix user name such as root or hzadmin",
    "version": "write a version such as v1.37.2",
    "region": "write the provider's region name, e.g. eu-central-1 or cn-hangzhou",
    "credentials": "name its secrets.yaml keys' prefix: lowercase letters, digits and '_', "
    "e.g. tenant_dr for tenant_dr_access_key and tenant_dr_secret_key",
    "bucket": "use 3-63 lowercase letters, digits and '-', e.g. hz-stgeorge-backup",
    "domain": "write a lowercase DNS domain, e.g. stgeorge.example-health.org",
}


def _field_problem(err: Any, loaded: Loaded, filename: str) -> Problem:
    problem = field_problem(err, loaded, filename, _FIXES, _PATTERN_FIXES)
    path = key_path(err)
    if err["type"] == "string_pattern_mismatch" and len(path) >= 2:
        if path[-2] == "disks":
            return replace(problem, fix="write the device path, e.g. /dev/sdb")
        if path[-2] == "sync_buckets":
            return replace(problem, fix=_PATTERN_FIXES["bucket"])
    return problem


CrossProblem = tuple[KeyPath, str, str]


def cross_field_problems(site: Site) -> list[CrossProblem]:
    """Rules that need more than one field: uniqueness, networks, quorums, pins."""
    out: list[CrossProblem] = []
    out += _server_problems(site)
    out += _network_problems(site)
    out += _service_problems(site)
    out += _pin_problems(site)
    out += _tenant_problems(site)
    return out


# Host names Ansible would confuse with its groups (one per role) or its built-in patterns.
_RESERVED_NAMES = {"all", "ungrouped", "localhost"} | {str(r).replace("-", "_") for r in Role}


def _server_problems(site: Site) -> list[CrossProblem]:
    out: list[CrossProblem] = []
    n = len(site.servers)
    if n < MIN_SERVERS:
        out.append(
            (
                ("servers",),
                f"{n} server(s) listed; quorums need at least {MIN_SERVERS}",
                f"list at least {MIN_SERVERS} servers",
            )
        )
    if n > MAX_SERVERS:
        out.append(
            (
                ("servers",),
                f"{n} servers listed; one site holds at most {MAX_SERVERS}",
                "split the hospital into several sites",
            )
        )
    seen_names: dict[str, int] = {}
    seen_addrs: dict[IPv4Address, int] = {}
    for i, s in enumerate(site.servers):
        if s.name in seen_names:
            out.append(
                (
                    ("servers", i, "name"),
                    f"name '{s.name}' is already used by servers[{seen_names[s.name]}]",
                    "give every server its own name",
                )
            )
        seen_names.setdefault(s.name, i)
        if s.name in _RESERVED_NAMES:
            out.append(
                (
                    ("servers", i, "name"),
                    f"name '{s.name}' is also an Ansible group or pattern",
                    f"choose another name, e.g. {site.hospital.code}-{s.name}",
                )
            )
        elif yaml.safe_load(s.name) != s.name:
            out.append(
                (
                    ("servers", i, "name"),
                    f"name '{s.name}' reads as a number, date or keyword in YAML, not as a name",
                    f"use a name YAML reads as text, e.g. {site.hospital.code}-{s.name}",
                )
            )
        if s.address in seen_addrs:
            out.append(
                (
                    ("servers", i, "address"),
                    f"address {s.address} is already used by servers[{seen_addrs[s.address]}]",
                    "give every server its own address",
                )
            )
        seen_addrs.setdefault(s.address, i)
        if len(set(s.disks)) != len(s.disks):
            out.append((("servers", i, "disks"), "a disk is listed twice", "list each disk once"))
        if len(set(s.roles)) != len(s.roles):
            out.append((("servers", i, "roles"), "a role is pinned twice", "list each role once"))
    return out


def _network_problems(site: Site) -> list[CrossProblem]:
    out: list[CrossProblem] = []
    net = site.networks
    mgmt = net.management
    usable = f"pick an address between {mgmt.network_address + 1} and {mgmt.broadcast_address - 1}"
    for i, s in enumerate(site.servers):
        if s.address not in mgmt:
            out.append(
                (
                    ("servers", i, "address"),
                    f"{s.address} is outside the management network {mgmt}",
                    f"{usable}, or correct networks.management",
                )
            )
        elif s.address in (mgmt.network_address, mgmt.broadcast_address):
            out.append(
                (
                    ("servers", i, "address"),
                    f"{s.address} is the network or broadcast address of {mgmt}",
                    usable,
                )
            )
    servers_by_addr = {s.address: s.name for s in site.servers}
    vips: dict[IPv4Address, str] = {}
    for key in ("postgres_vip", "kubernetes_vip", "ingress_vip"):
        vip = getattr(net, key)
        if vip is None:
            continue
        path: KeyPath = ("networks", key)
        if vip not in mgmt or vip in (mgmt.network_address, mgmt.broadcast_address):
            out.append(
                (path, f"{vip} is not a usable address of the management network {mgmt}", usable)
            )
        elif vip in servers_by_addr:
            out.append(
                (
                    path,
                    f"{vip} is the address of server {servers_by_addr[vip]}",
                    "choose a free address for the VIP",
                )
            )
        elif vip in vips:
            out.append(
                (path, f"{vip} is also networks.{vips[vip]}", "give each VIP its own address")
            )
        vips.setdefault(vip, key)
    cidrs: list[tuple[KeyPath, IPv4Network]] = [
        (("networks", "management"), mgmt),
        (("networks", "pod_cidr"), net.pod_cidr),
        (("networks", "service_cidr"), net.service_cidr),
    ] + [(("cloud", "tenants", i, "subnet"), t.subnet) for i, t in enumerate(site.cloud.tenants)]
    for a in range(len(cidrs)):
        for b in range(a):
            (pa, na), (pb, nb) = cidrs[a], cidrs[b]
            if na.overlaps(nb):
                out.append(
                    (pa, f"{na} overlaps {dotted(pb)} {nb}", "choose networks that do not overlap")
                )
    names = [t.name for t in site.cloud.tenants]
    for i, t in enumerate(site.cloud.tenants):
        if names.index(t.name) != i:
            out.append(
                (
                    ("cloud", "tenants", i, "name"),
                    f"tenant name '{t.name}' is used twice",
                    "give every tenant its own name",
                )
            )
        if t.endpoint in mgmt:
            out.append(
                (
                    ("cloud", "tenants", i, "endpoint"),
                    f"{t.endpoint} is inside the management network {mgmt}",
                    "give the tenant's public VPN endpoint address",
                )
            )
    for i, ntp in enumerate(net.ntp):
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", ntp):
            out.append(
                (
                    ("networks", "ntp", i),
                    f"'{ntp}' is not a host name or address",
                    "write an NTP server such as 10.20.0.1 or ntp.hospital.local",
                )
            )
    return out


def _service_problems(site: Site) -> list[CrossProblem]:
    out: list[CrossProblem] = []
    ceph = site.services.ceph
    n = len(site.servers)
    if ceph.enabled:
        storage = len(site.storage_servers)
        if storage == 0:
            out.append(
                (
                    ("servers",),
                    "Ceph is enabled but no server offers disks",
                    "add disks: [/dev/sdb] to the storage servers, or set services.ceph.enabled: false",
                )
            )
        elif ceph.replicas > storage:
            out.append(
                (
                    ("services", "ceph", "replicas"),
                    f"replicas {ceph.replicas} needs {ceph.replicas} storage servers; {storage} offer disks",
                    f"lower services.ceph.replicas to {storage} or offer disks on more servers",
                )
            )
        if ceph.min_size > ceph.replicas:
            out.append(
                (
                    ("services", "ceph", "min_size"),
                    f"min_size {ceph.min_size} is larger than replicas {ceph.replicas}",
                    "set min_size to at most replicas (usually replicas - 1)",
                )
            )
        if ceph.mons % 2 == 0:
            out.append(
                (
                    ("services", "ceph", "mons"),
                    f"must be odd (got {ceph.mons})",
                    "use 3 or 5 monitors so a majority can always be formed",
                )
            )
        elif ceph.mons > n:
            out.append(
                (
                    ("services", "ceph", "mons"),
                    f"{ceph.mons} monitors need {ceph.mons} servers; {n} listed",
                    "lower services.ceph.mons or add servers",
                )
            )
    # what each service needs from PostgreSQL, Redis and Ceph: the bundle's entries say
    # (_bundle_problems); Kubernetes is needed by every bundle
    if site.bundle.services and not site.services.kubernetes.enabled:
        out.append(
            (
                ("bundle", "services"),
                "the clinical bundle runs on Kubernetes, which is disabled",
                "enable services.kubernetes or set bundle.services: []",
            )
        )
    if len(set(site.bundle.services)) != len(site.bundle.services):
        out.append((("bundle", "services"), "a service is listed twice", "list each service once"))
    return out


def _bundle_problems(site: Site, folder: Path | None) -> list[CrossProblem]:
    """bundle.services against the bundle the site installs from: names and needs."""
    if not site.bundle.services:
        return []  # a site without clinical services reads no bundle
    from hzcloud import bundle  # only sites that list services pay for reading a bundle

    return bundle.site_problems(site, bundle.bundle_for_site(site, folder))


def _pin_problems(site: Site) -> list[CrossProblem]:
    out: list[CrossProblem] = []
    pinned: dict[Role, list[int]] = {}
    for i, s in enumerate(site.servers):
        for role in dict.fromkeys(s.roles):
            pinned.setdefault(role, []).append(i)
            path: KeyPath = ("servers", i, "roles")
            if not site.enabled(role):
                out.append(
                    (
                        path,
                        f"role {role} is pinned but its service is disabled",
                        "remove the pin or enable the service in services:",
                    )
                )
            if role is Role.CEPH_OSD and not s.disks:
                out.append(
                    (
                        path,
                        "role ceph-osd is pinned on a server without disks",
                        "add disks: [...] to this server or remove the pin",
                    )
                )
            leader = FOLLOWS.get(role)
            if leader is not None and leader not in s.roles:
                out.append(
                    (
                        path,
                        f"role {role} is pinned without {leader}; {role} always runs beside {leader}",
                        f"pin {leader} on this server too, or remove the pin",
                    )
                )
        if Role.K8S_SERVER in s.roles and Role.K8S_AGENT in s.roles:
            out.append(
                (
                    ("servers", i, "roles"),
                    "k8s-server and k8s-agent pinned on the same server",
                    "a Kubernetes server is never also an agent: keep one of them",
                )
            )
    sizes = dict(QUORUM_SIZE)
    sizes[Role.CEPH_MON] = site.services.ceph.mons
    for role, idx in pinned.items():
        size = sizes.get(role)
        if size is not None and len(idx) > size:
            out.append(
                (
                    ("servers", idx[size], "roles"),
                    f"{role} is pinned on {len(idx)} servers; it runs on exactly {size}",
                    f"pin {role} on at most {size} server{'s' if size != 1 else ''}",
                )
            )
    agents = pinned.get(Role.K8S_AGENT, [])
    free = len(site.servers) - QUORUM_SIZE[Role.K8S_SERVER]
    if site.services.kubernetes.enabled and len(agents) > max(free, 0):
        out.append(
            (
                ("servers", agents[max(free, 0)], "roles"),
                f"k8s-agent is pinned on {len(agents)} of {len(site.servers)} servers; "
                f"{QUORUM_SIZE[Role.K8S_SERVER]} must stay free for k8s-server",
                f"pin k8s-agent on at most {max(free, 0)} servers",
            )
        )
    return out


def _tenant_problems(site: Site) -> list[CrossProblem]:
    out: list[CrossProblem] = []
    for i, t in enumerate(site.cloud.tenants):
        path: KeyPath = ("cloud", "tenants", i)
        if t.provider == "s3-compatible" and t.api is None:
            out.append(
                (
                    (*path, "provider"),
                    "an s3-compatible tenant has no public default endpoint",
                    "add api: with the service's S3 URL, e.g. https://s3.example.org",
                )
            )
        if t.sync_buckets and not site.services.ceph.enabled:
            out.append(
                (
                    (*path, "sync_buckets"),
                    "buckets to copy from Ceph's S3, but Ceph is disabled",
                    "enable services.ceph, or remove sync_buckets",
                )
            )
        for j, name in enumerate(t.sync_buckets):
            if name in t.sync_buckets[:j]:
                out.append(
                    (
                        (*path, "sync_buckets", j),
                        f"bucket '{name}' is listed twice",
                        "list every bucket once",
                    )
                )
        if t.api is not None and t.api.scheme == "http" and not _inside_link(t.api.host, t):
            out.append(
                (
                    (*path, "api"),
                    f"{t.api} is plain HTTP: the tenant's keys would cross the internet in clear",
                    "use https://, or an address inside the tenant's subnet (reached "
                    "through the link)",
                )
            )
    return out


def _inside_link(host: str | None, tenant: Tenant) -> bool:
    """An address only the WireGuard link (or this host) reaches: plain HTTP stays private."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return address.is_loopback or address in tenant.subnet


def parse_address(text: str) -> IPv4Address:
    """Parse an IPv4 address typed by a person (used by the wizard)."""
    return ipaddress.IPv4Address(text.strip())
