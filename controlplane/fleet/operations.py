"""Fleet operations for every edge: the fleet at a glance, validation, the inventory.

Hosts are shared by every member, so every caller sees them all with their total
reservations; a member-scoped caller sees only its own members and their instances.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controlplane.access.policy import Action, Principal, authorize
from controlplane.costs.loader import costs_path, load_costs
from controlplane.fleet.capacity import host_usage
from controlplane.fleet.inventory import render_inventory
from controlplane.maintenance.loader import load_jobs
from controlplane.notify.config import load_targets
from controlplane.schemas.fleet import (
    FleetOut,
    HostOut,
    InstanceOut,
    MemberOut,
    ValidationOut,
)

if TYPE_CHECKING:
    from controlplane.app import Context


def show_fleet(ctx: Context, principal: Principal) -> FleetOut:
    """Members, hosts with capacity and reservations, and every placed instance."""
    authorize(principal, Action.FLEET_READ)
    model = ctx.fleet
    return FleetOut(
        datacenter=model.name,
        members=[MemberOut.of(m) for m in model.members if principal.sees(m.slug)],
        hosts=[HostOut.of(model.host(u.host), u) for u in host_usage(model)],
        instances=[InstanceOut.of(i) for i in model.instances() if principal.sees(i.member)],
    )


def validate(ctx: Context, principal: Principal) -> ValidationOut:
    """Load and cross-check every fleet file (fleet, windows, maintenance jobs, costs,
    notification targets);
    the first problem raises one error naming the file and field."""
    authorize(principal, Action.FLEET_READ)
    model = ctx.fleet
    directory = ctx.settings.resolved_fleet
    windows = ctx.gate.windows
    jobs = load_jobs(directory, model, ctx.gate)
    load_targets(directory, model)
    has_costs = costs_path(directory).exists()
    if has_costs:
        load_costs(directory, model)
    return ValidationOut(
        fleet=str(directory),
        datacenter=model.name,
        members=len(model.members),
        hosts=len(model.hosts),
        apps=len(model.apps),
        instances=len(model.instances()),
        windows=len(windows),
        maintenance_jobs=len(jobs),
        costs=has_costs,
    )


def inventory(ctx: Context, principal: Principal, member: str | None = None) -> dict[str, Any]:
    """The Ansible inventory rendered from the fleet (only ``member``'s hosts when given)."""
    authorize(principal, Action.FLEET_READ, member)
    if member is None and principal.scoped:
        # The full inventory names every member's instances; scoped callers ask per member.
        authorize(principal, Action.TOKENS_ADMIN)
    return render_inventory(ctx.fleet, ctx.render_context, member=member)
