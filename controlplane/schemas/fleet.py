"""The fleet as the edges show it: members, hosts with capacity, placed instances."""

from __future__ import annotations

from pydantic import BaseModel

from controlplane.fleet.capacity import HostUsage
from controlplane.fleet.model import Host, Member, PlacedInstance


class MemberOut(BaseModel):
    member: str
    name: str
    slo: float
    deploy_policy: str

    @classmethod
    def of(cls, m: Member) -> MemberOut:
        return cls(member=m.slug, name=m.name, slo=m.slo, deploy_policy=m.deploy_policy.value)


class HostOut(BaseModel):
    """Capacity and reservations as exact decimal strings (vcpu, ram_gib, disk_gib)."""

    host: str
    address: str
    capacity: dict[str, str]
    reserved: dict[str, str]

    @classmethod
    def of(cls, host: Host, usage: HostUsage) -> HostOut:
        return cls(
            host=usage.host,
            address=host.address,
            capacity={k: str(v) for k, v in usage.capacity.items()},
            reserved={k: str(v) for k, v in usage.reserved.items()},
        )


class InstanceOut(BaseModel):
    member: str
    app: str
    version: str
    host: str
    address: str
    port: int

    @classmethod
    def of(cls, i: PlacedInstance) -> InstanceOut:
        return cls(
            member=i.member,
            app=i.app,
            version=i.version,
            host=i.host,
            address=i.address,
            port=i.port,
        )


class FleetOut(BaseModel):
    datacenter: str
    members: list[MemberOut]
    hosts: list[HostOut]
    instances: list[InstanceOut]


class ValidationOut(BaseModel):
    """What ``validate`` found in a fleet directory that passed every check."""

    status: str = "valid"
    fleet: str
    datacenter: str
    members: int
    hosts: int
    apps: int
    instances: int
    windows: int
    maintenance_jobs: int
    costs: bool
