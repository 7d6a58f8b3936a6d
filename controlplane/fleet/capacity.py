"""Capacity figures per host: what is reserved, what is free, how full it is."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from controlplane.fleet.model import Fleet, Resources


@dataclass(frozen=True)
class HostUsage:
    host: str
    capacity: Resources
    reserved: Resources

    @property
    def free(self) -> Resources:
        return Resources(
            self.capacity.vcpu - self.reserved.vcpu,
            self.capacity.ram_gib - self.reserved.ram_gib,
            self.capacity.disk_gib - self.reserved.disk_gib,
        )

    def ratio(self, resource: str) -> Decimal:
        cap = dict(self.capacity.items())[resource]
        return dict(self.reserved.items())[resource] / cap


def host_usage(fleet: Fleet) -> list[HostUsage]:
    return [HostUsage(h.name, h.capacity, fleet.reserved_on(h.name)) for h in fleet.hosts]
