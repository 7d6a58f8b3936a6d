"""The pure fleet model: frozen, validated records and the cross-checks between them.

Leaf records are pydantic dataclasses, so a raw YAML mapping is checked field by field
(unknown fields, types, ranges) on construction. ``Fleet`` ties them together and checks
what no single record can: references, duplicates, ports and capacity.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import TypeVar

from packaging.version import Version
from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as record

from controlplane.errors import (
    AppNotFound,
    FleetInvalid,
    HostNotFound,
    MemberNotFound,
    VersionNotFound,
)

# Other modules import these from here; they live in fleet.patterns.
from controlplane.fleet.patterns import HOSTNAME_RE as HOSTNAME_RE
from controlplane.fleet.patterns import SLUG_RE as SLUG_RE
from controlplane.fleet.patterns import (
    Address,
    FilePath,
    HealthPath,
    HostName,
    Interpreter,
    NonNegativeAmount,
    Notes,
    PlainVersion,
    Port,
    PositiveAmount,
    Text,
    UserName,
    check_datacenter,
)
from controlplane.fleet.patterns import Slug as Slug
from controlplane.fleet.patterns import check_version as check_version

STRICT = ConfigDict(extra="forbid")


class ConnectionKind(Enum):
    LOCAL = "local"
    SSH = "ssh"


class ProcessManager(Enum):
    """How app processes are started on a host: a pidfile (the lab) or systemd units."""

    PIDFILE = "pidfile"
    SYSTEMD = "systemd"


class DeployPolicy(Enum):
    """Whether a member's changes need an open window, or only have to avoid freezes."""

    WINDOW_REQUIRED = "window-required"
    AVOID_FREEZES = "avoid-freezes"


@record(frozen=True, config=STRICT)
class Resources:
    """vCPU, RAM GiB and disk GiB; capacities, or a reservation per replica."""

    vcpu: NonNegativeAmount
    ram_gib: NonNegativeAmount
    disk_gib: NonNegativeAmount

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.vcpu + other.vcpu, self.ram_gib + other.ram_gib, self.disk_gib + other.disk_gib
        )

    def items(self) -> Iterator[tuple[str, Decimal]]:
        yield "vcpu", self.vcpu
        yield "ram_gib", self.ram_gib
        yield "disk_gib", self.disk_gib


ZERO = Resources(Decimal(0), Decimal(0), Decimal(0))


@record(frozen=True, config=STRICT)
class Capacity(Resources):
    """A host's capacity: every amount must be positive."""

    vcpu: PositiveAmount
    ram_gib: PositiveAmount
    disk_gib: PositiveAmount


@record(frozen=True, config=STRICT)
class Member:
    slug: Slug
    name: Text
    slo: float = Field(gt=0, lt=1)
    deploy_policy: DeployPolicy = DeployPolicy.AVOID_FREEZES


@record(frozen=True, config=STRICT)
class Host:
    """A shared machine. ``root`` prefixes every path the playbooks touch on it.

    An SSH host must name the known_hosts file that holds its host key: keys are always
    checked, and a host presenting any other key is not connected to."""

    name: HostName
    address: Address
    capacity: Capacity
    connection: ConnectionKind = ConnectionKind.SSH
    process_manager: ProcessManager = ProcessManager.PIDFILE
    port: Port = 22
    user: UserName | None = None
    become: StrictBool = False
    python_interpreter: Interpreter | None = None
    private_key_file: FilePath | None = None
    known_hosts_file: FilePath | None = Field(default=None, validate_default=True)
    # Relative roots are resolved against the data dir (the lab); absolute ones are used as is.
    root: FilePath | None = None

    @field_validator("known_hosts_file")
    @classmethod
    def _known_hosts(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("connection", ConnectionKind.SSH) is ConnectionKind.SSH:
            raise ValueError(
                "an ssh host needs the known_hosts file holding its host key "
                "(the system one is /etc/ssh/ssh_known_hosts)"
            )
        return value


@record(frozen=True, config=STRICT)
class AppVersion:
    version: PlainVersion
    broken: StrictBool = False
    notes: Notes = ""

    @property
    def parsed(self) -> Version:
        return Version(self.version)


@record(frozen=True, config=STRICT)
class App:
    slug: Slug
    name: Text
    health_path: HealthPath
    resources: Resources
    versions: tuple[AppVersion, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_versions(self) -> App:
        seen: set[str] = set()
        for v in self.versions:
            if v.version in seen:
                raise ValueError(f"version {v.version} is listed twice")
            seen.add(v.version)
        return self

    def version(self, version: str) -> AppVersion:
        for v in self.versions:
            if v.version == version:
                return v
        raise VersionNotFound(f"app {self.slug} has no version {version} in the catalogue")

    @property
    def latest_good(self) -> AppVersion:
        good = [v for v in self.versions if not v.broken] or list(self.versions)
        return max(good, key=lambda v: v.parsed)


@record(frozen=True, config=STRICT)
class Instance:
    host: HostName
    port: Port


@record(frozen=True, config=STRICT)
class StackApp:
    """One member's deployment of one app: version, placement, and optional sizing."""

    app: Slug
    version: PlainVersion
    instances: tuple[Instance, ...] = Field(min_length=1)
    resources: Resources | None = None  # per replica; the catalogue's when absent

    @property
    def replicas(self) -> int:
        return len(self.instances)


@record(frozen=True, config=STRICT)
class Stack:
    member: Slug
    apps: tuple[StackApp, ...]


@dataclass(frozen=True)
class PlacedInstance:
    """An instance with everything a playbook or a probe needs to reach it."""

    member: str
    app: str
    version: str
    host: str
    address: str
    port: int
    health_path: str
    reserved: Resources


@dataclass(frozen=True)
class Fleet:
    """A whole datacenter, cross-checked on construction."""

    name: str
    members: tuple[Member, ...]
    hosts: tuple[Host, ...]
    apps: tuple[App, ...]
    stacks: tuple[Stack, ...]
    timezone: str = "Europe/Amsterdam"
    _by_member: dict[str, Member] = field(init=False, repr=False, compare=False)
    _by_host: dict[str, Host] = field(init=False, repr=False, compare=False)
    _by_app: dict[str, App] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_datacenter(self.name, self.timezone)
        object.__setattr__(self, "_by_member", _index(self.members, "members", "slug"))
        object.__setattr__(self, "_by_host", _index(self.hosts, "hosts", "name"))
        object.__setattr__(self, "_by_app", _index(self.apps, "apps", "slug"))
        self._check_stacks()
        self._check_ports()
        self._check_capacity()

    # -- lookups ---------------------------------------------------------------------------

    def member(self, slug: str) -> Member:
        try:
            return self._by_member[slug]
        except KeyError:
            raise MemberNotFound(f"unknown member {slug!r}") from None

    def host(self, name: str) -> Host:
        try:
            return self._by_host[name]
        except KeyError:
            raise HostNotFound(f"unknown host {name!r}") from None

    def app(self, slug: str) -> App:
        try:
            return self._by_app[slug]
        except KeyError:
            raise AppNotFound(f"unknown app {slug!r}") from None

    def stack(self, member: str) -> Stack:
        self.member(member)
        for stack in self.stacks:
            if stack.member == member:
                return stack
        return Stack(member=member, apps=())

    def stack_app(self, member: str, app: str) -> StackApp:
        self.app(app)
        for sa in self.stack(member).apps:
            if sa.app == app:
                return sa
        raise AppNotFound(f"member {member} does not run app {app!r}")

    def reservation(self, sa: StackApp) -> Resources:
        """Resources one replica of a stack app reserves on its host."""
        return sa.resources if sa.resources is not None else self.app(sa.app).resources

    def instances(self, member: str | None = None, app: str | None = None) -> list[PlacedInstance]:
        """Every placed instance, optionally for one member and/or app."""
        out: list[PlacedInstance] = []
        for stack in self.stacks:
            if member is not None and stack.member != member:
                continue
            for sa in stack.apps:
                if app is not None and sa.app != app:
                    continue
                catalogue = self.app(sa.app)
                for inst in sa.instances:
                    host = self.host(inst.host)
                    out.append(
                        PlacedInstance(
                            member=stack.member,
                            app=sa.app,
                            version=sa.version,
                            host=host.name,
                            address=host.address,
                            port=inst.port,
                            health_path=catalogue.health_path,
                            reserved=self.reservation(sa),
                        )
                    )
        return out

    def reserved_on(self, host: str) -> Resources:
        total = ZERO
        for inst in self.instances():
            if inst.host == host:
                total = total + inst.reserved
        return total

    # -- cross-checks ------------------------------------------------------------------------

    def _check_stacks(self) -> None:
        seen: set[str] = set()
        for stack in self.stacks:
            where = f"stacks.{stack.member}"
            if stack.member not in self._by_member:
                raise FleetInvalid(where, f"unknown member {stack.member!r}")
            if stack.member in seen:
                raise FleetInvalid(where, f"member {stack.member} has two stacks")
            seen.add(stack.member)
            apps_seen: set[str] = set()
            for sa in stack.apps:
                at = f"{where}.{sa.app}"
                if sa.app not in self._by_app:
                    raise FleetInvalid(at, f"unknown app {sa.app!r}")
                if sa.app in apps_seen:
                    raise FleetInvalid(at, f"app {sa.app} is listed twice")
                apps_seen.add(sa.app)
                app = self._by_app[sa.app]
                if sa.version not in {v.version for v in app.versions}:
                    raise FleetInvalid(
                        f"{at}.version", f"version {sa.version} is not in the {sa.app} catalogue"
                    )
                for i, inst in enumerate(sa.instances):
                    if inst.host not in self._by_host:
                        raise FleetInvalid(
                            f"{at}.instances[{i}].host", f"unknown host {inst.host!r}"
                        )

    def _check_ports(self) -> None:
        # Keyed by address: lab hosts and containers can share one network stack.
        used: dict[tuple[str, int], str] = {}
        for stack in self.stacks:
            for sa in stack.apps:
                for i, inst in enumerate(sa.instances):
                    host = self._by_host[inst.host]
                    key = (host.address, inst.port)
                    owner = f"{stack.member}/{sa.app}"
                    if key in used:
                        raise FleetInvalid(
                            f"stacks.{stack.member}.{sa.app}.instances[{i}].port",
                            f"port {inst.port} on {host.name} ({host.address}) is already used "
                            f"by {used[key]}",
                        )
                    used[key] = owner

    def _check_capacity(self) -> None:
        totals: dict[str, Resources] = defaultdict(lambda: ZERO)
        for inst in self.instances():
            totals[inst.host] = totals[inst.host] + inst.reserved
        for name, reserved in totals.items():
            cap = self._by_host[name].capacity
            for (resource, want), (_, have) in zip(reserved.items(), cap.items(), strict=True):
                if want > have:
                    raise FleetInvalid(
                        f"hosts[{name}].capacity.{resource}",
                        f"stacks reserve {want} but the host has {have}",
                    )


T = TypeVar("T")


def _index(items: tuple[T, ...], section: str, key: str) -> dict[str, T]:
    out: dict[str, T] = {}
    for i, item in enumerate(items):
        name = getattr(item, key)
        if name in out:
            raise FleetInvalid(f"{section}[{i}].{key}", f"duplicate {key} {name!r}")
        out[name] = item
    return out
