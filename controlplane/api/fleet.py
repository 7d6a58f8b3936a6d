"""``/api/v1`` fleet routes: the fleet summary, members, hosts, the app catalogue and a
member's stack.

The pattern every router follows: declare the action with ``requires``, take the context,
call the operation with the principal, return a response model. Lists hold only the
members the caller acts for; a single member outside them is a 404.

``AppOut``, ``StackOut`` and ``MemberHealthOut`` have no CLI counterpart yet; they move to
``schemas/fleet.py`` when a CLI command prints them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel

from controlplane.access.policy import Action, Principal
from controlplane.api.auth import context, requires
from controlplane.api.errors import ERROR_RESPONSES
from controlplane.api.query import known_query_only
from controlplane.app import Context
from controlplane.deploy.provision import health_out
from controlplane.fleet.model import App, Fleet, Stack
from controlplane.fleet.operations import show_fleet
from controlplane.schemas.fleet import FleetOut, HostOut, InstanceOut, MemberOut
from controlplane.schemas.runs import InstanceHealthOut
from controlplane.uptime.probes import probe_all

router = APIRouter(
    prefix="/api/v1",
    tags=["fleet"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(known_query_only)],
)

Reader = Annotated[Principal, requires(Action.FLEET_READ)]
Ctx = Annotated[Context, Depends(context)]
MemberSlug = Annotated[str, Path(description="member slug, e.g. rotterdam", max_length=63)]


class AppVersionOut(BaseModel):
    version: str
    broken: bool
    notes: str


class AppOut(BaseModel):
    app: str
    name: str
    health_path: str
    latest_good: str
    versions: list[AppVersionOut]

    @classmethod
    def of(cls, app: App) -> AppOut:
        return cls(
            app=app.slug,
            name=app.name,
            health_path=app.health_path,
            latest_good=app.latest_good.version,
            versions=[
                AppVersionOut(version=v.version, broken=v.broken, notes=v.notes)
                for v in app.versions
            ],
        )


class MemberHealthOut(BaseModel):
    """Each of a member's instances probed just now; ``status`` is ok when all answer
    healthy, down when none does, degraded in between."""

    member: str
    status: str
    healthy: int
    instances: list[InstanceHealthOut]


class StackAppOut(BaseModel):
    app: str
    version: str
    replicas: int
    instances: list[InstanceOut]


class StackOut(BaseModel):
    member: str
    apps: list[StackAppOut]

    @classmethod
    def of(cls, fleet: Fleet, stack: Stack) -> StackOut:
        return cls(
            member=stack.member,
            apps=[
                StackAppOut(
                    app=sa.app,
                    version=sa.version,
                    replicas=sa.replicas,
                    instances=[
                        InstanceOut.of(i) for i in fleet.instances(member=stack.member, app=sa.app)
                    ],
                )
                for sa in stack.apps
            ],
        )


@router.get("/fleet", summary="The fleet at a glance: members, hosts, placed instances")
def fleet_summary(principal: Reader, ctx: Ctx) -> FleetOut:
    return show_fleet(ctx, principal)


@router.get("/members", summary="Members the caller acts for")
def list_members(principal: Reader, ctx: Ctx) -> list[MemberOut]:
    return show_fleet(ctx, principal).members


@router.get("/hosts", summary="Shared hosts: capacity and what all stacks reserve on them")
def list_hosts(principal: Reader, ctx: Ctx) -> list[HostOut]:
    # Hosts are shared infrastructure, not a member's object: every fleet reader sees them,
    # with totals only, never one member's reservations.
    return show_fleet(ctx, principal).hosts


@router.get("/apps", summary="The shared application catalogue")
def list_apps(_principal: Reader, ctx: Ctx) -> list[AppOut]:
    return [AppOut.of(a) for a in ctx.fleet.apps]


@router.get("/members/{member}/stack", summary="One member's stack: apps, versions, placement")
def member_stack(member: MemberSlug, _principal: Reader, ctx: Ctx) -> StackOut:
    fleet = ctx.fleet
    return StackOut.of(fleet, fleet.stack(member))


@router.get(
    "/members/{member}/health",
    summary="Probe a member's instances now (health and live version, short timeout)",
)
def member_health(member: MemberSlug, _principal: Reader, ctx: Ctx) -> MemberHealthOut:
    fleet = ctx.fleet
    fleet.member(member)
    probes = probe_all(fleet.instances(member=member), timeout=ctx.settings.probe_timeout_seconds)
    healthy = sum(1 for p in probes if p.healthy)
    status = "ok" if healthy == len(probes) else "down" if healthy == 0 else "degraded"
    return MemberHealthOut(
        member=member, status=status, healthy=healthy, instances=[health_out(p) for p in probes]
    )
