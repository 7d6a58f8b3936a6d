"""Every /api/v1 route, every role, own/other member, generated from the app's route
table: a new route is covered the moment it is added, and a route without a declared
action fails.

For each case: a role without the route's action gets 403; an engineer asking for another
member's object gets 404 (never 403: its existence is not revealed); everyone else passes
authorization (not 401/403/404), and an engineer's answer names no other member.
Writes are sent an empty JSON body, so they stop at body validation after authorization.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import APIRouter

from controlplane.access.policy import PERMISSIONS, Role
from controlplane.api.app import create_app
from controlplane.api.auth import endpoints
from controlplane.api.openapi import reference_app
from controlplane.deploy.model import RunKind, RunSpec, RunStatus
from tests.api_fixtures import OTHER, OWN, Api, build_api

ROLES = {"admin": Role.ADMIN, "engineer": Role.ENGINEER, "board": Role.BOARD}
ROLES["metrics"] = Role.METRICS
PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Sample:
    """How to fill a path parameter with an object of ``member``; ``scoped`` when the
    object belongs to that member (so another member's one must be a 404)."""

    make: Callable[[Api, str], str]
    scoped: bool


def _host_of(api: Api, member: str) -> str:
    return api.ctx.fleet.instances(member=member)[0].host


def _finished_run_of(api: Api, member: str) -> str:
    """A run of ``member`` that has ended, so its event stream replays and closes."""
    store = api.ctx.runs
    run = store.create(
        RunSpec(
            kind=RunKind.DEPLOY,
            playbook="deploy.yml",
            started_by="test",
            member=member,
            app="uitkering",
            version="1.0.0",
            hosts=(_host_of(api, member),),
        )
    )
    store.transition(run.id, RunStatus.FAILED, error="a sample run")
    return run.id


# One entry per path parameter any route uses. A route with a parameter missing here
# fails below: add how to make a real object of a given member.
SAMPLES: dict[str, Sample] = {
    "member": Sample(lambda _api, member: member, scoped=True),
    "app": Sample(lambda _api, _member: "uitkering", scoped=False),
    "host": Sample(_host_of, scoped=False),
    "run_id": Sample(_finished_run_of, scoped=True),
    "period": Sample(lambda _api, _member: "2026-01", scoped=False),
}


def fill(api: Api, path: str, owner: str) -> str:
    """``path`` with each parameter replaced by a real object of ``owner``."""
    return PARAM.sub(lambda m: SAMPLES[m.group(1)].make(api, owner), path)


def api_endpoints() -> list[tuple[str, str]]:
    found = endpoints(reference_app().routes)
    return sorted(
        (e.path, m) for e in found if e.path.startswith("/api/v1/") for m in e.methods - {"HEAD"}
    )


ENDPOINTS = api_endpoints()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    built = build_api(tmp_path_factory.mktemp("authz"))
    yield built
    built.client.close()
    built.ctx.close()


def members_named(body: Any) -> set[str]:
    """Every ``member`` value anywhere in a JSON answer."""
    found: set[str] = set()
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "member" and isinstance(value, str):
                found.add(value)
            found |= members_named(value)
    elif isinstance(body, list):
        for item in body:
            found |= members_named(item)
    return found


def leaks(api: Api, response: Any) -> set[str]:
    """Other members an engineer's answer names: ``member`` values in JSON, or their slugs
    anywhere in a text answer (a calendar, an event stream)."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return members_named(response.json()) - {OWN}
    others = {m.slug for m in api.ctx.fleet.members} - {OWN}
    return {m for m in others if m in response.text}


def test_the_route_table_is_not_empty_and_every_api_route_declares_its_action(api: Api) -> None:
    served = [e for e in endpoints(api.app.routes) if e.path.startswith("/api/v1/")]
    assert {e.path for e in served} >= {"/api/v1/members", "/api/v1/members/{member}/stack"}
    document = api.app.openapi()["paths"]
    for e in served:
        assert e.action is not None, f"{e.path} declares no action"
        for method in e.methods - {"HEAD"}:
            assert document[e.path][method.lower()]["x-required-action"] == e.action.value


def test_a_route_without_a_declared_action_is_refused_at_build_time(api: Api) -> None:
    careless = APIRouter(prefix="/api/v1")

    @careless.get("/open")
    def open_route() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="/open does not declare its action"):
        create_app(
            api.ctx,
            registry=api.app.state.registry,
            readiness=api.app.state.readiness,
            routers=[careless],
        )


@pytest.mark.parametrize(("path", "method"), ENDPOINTS, ids=[f"{m} {p}" for p, m in ENDPOINTS])
def test_every_route_every_role_own_and_other_member(api: Api, path: str, method: str) -> None:
    [endpoint] = [e for e in endpoints(api.app.routes) if e.path == path and method in e.methods]
    action = endpoint.action
    assert action is not None
    params = PARAM.findall(path)
    for name in params:
        assert name in SAMPLES, f"{path}: add a sample for the path parameter {name!r}"
    scoped = any(SAMPLES[name].scoped for name in params)
    for who, role in ROLES.items():
        for owner in (OWN, OTHER) if scoped else (OWN,):
            concrete = fill(api, path, owner)
            response = api.client.request(
                method,
                concrete,
                headers=api.headers(who),
                json={} if method in WRITES else None,
            )
            case = f"{who} {method} {concrete}: {response.status_code} {response.text[:200]}"
            status = response.status_code
            if action not in PERMISSIONS[role]:
                assert status == 403, case
                assert response.json()["error"]["code"] == "forbidden", case
            elif role is Role.ENGINEER and owner == OTHER:
                assert status == 404, case
            else:
                assert status not in (401, 403, 404), case
                assert status < 500, case
                if role is Role.ENGINEER and status < 300:
                    leaked = leaks(api, response)
                    assert not leaked, f"{case}: names {leaked}"


def test_without_a_token_every_api_route_is_401(api: Api) -> None:
    for path, method in ENDPOINTS:
        concrete = fill(api, path, OWN)
        response = api.client.request(method, concrete)
        assert response.status_code == 401, f"{method} {concrete}"


def test_engineer_lists_only_their_members_and_admin_sees_all(api: Api) -> None:
    everyone = {m.slug for m in api.ctx.fleet.members}
    assert {m["member"] for m in api.get("/api/v1/members", "engineer").json()} == {OWN}
    assert {m["member"] for m in api.get("/api/v1/members").json()} == everyone
    assert {m["member"] for m in api.get("/api/v1/members", "board").json()} == everyone


def test_a_member_stack_shows_versions_and_placement(api: Api) -> None:
    stack = api.get(f"/api/v1/members/{OWN}/stack", "engineer").json()
    assert stack["member"] == OWN
    by_app = {a["app"]: a for a in stack["apps"]}
    expected = api.ctx.fleet.stack_app(OWN, "uitkering")
    assert by_app["uitkering"]["version"] == expected.version
    assert by_app["uitkering"]["replicas"] == len(expected.instances)
    placed = {(i["host"], i["port"]) for i in by_app["uitkering"]["instances"]}
    assert placed == {(i.host, i.port) for i in expected.instances}
    unknown = api.get("/api/v1/members/gouda/stack")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "member_not_found"


def test_hosts_show_capacity_and_the_total_reserved(api: Api) -> None:
    hosts = {h["host"]: h for h in api.get("/api/v1/hosts", "board").json()}
    assert set(hosts) == {h.name for h in api.ctx.fleet.hosts}
    some = next(iter(hosts))
    reserved = api.ctx.fleet.reserved_on(some)
    assert hosts[some]["reserved"]["vcpu"] == str(reserved.vcpu)
