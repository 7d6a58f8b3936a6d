"""Every run asks the windows gate first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from controlplane.deploy.model import RunKind, RunSpec
from controlplane.deploy.options import GateRecord
from controlplane.errors import GateClosed
from controlplane.windows.gate import Gate

# (member, app) -> whether the run store ever recorded a release of that member's app.
EverReleased = Callable[[str, str], bool]


def gate_spec(
    gate: Gate | None, spec: RunSpec, now: datetime, *, ever_released: EverReleased
) -> RunSpec:
    """The spec with the gate's decision recorded, or ``GateClosed`` naming the freeze or
    missing window and the next opening.

    Plans (check mode) and drift checks change nothing and are always allowed. A first
    install may pass a freeze, because a freeze protects what runs and nothing runs yet;
    but only when the store has never recorded a release of that member's app. An app
    that merely does not answer (a network partition, a crashed host) may well be running
    and serving, so ``first_install`` alone is not enough."""
    if gate is None or spec.options.check or spec.kind is RunKind.DRIFT:
        return spec
    if spec.kind is RunKind.PATCH:
        decisions = [
            gate.check_host(h, now, emergency_reason=spec.emergency_reason) for h in spec.hosts
        ]
    else:
        assert spec.member is not None
        decisions = [
            gate.check_member(spec.member, spec.app, now, emergency_reason=spec.emergency_reason)
        ]
    refused = [d for d in decisions if not d.allowed]
    note = "; ".join(d.message for d in decisions)
    if refused and _first_install(spec, ever_released):
        note = f"first install, nothing live to protect; the gate said: {note}"
    elif refused:
        raise GateClosed(refused[0].message, refused[0])
    record = GateRecord(reason=decisions[0].reason.value, message=note)
    return replace(spec, options=replace(spec.options, gate=record))


def _first_install(spec: RunSpec, ever_released: EverReleased) -> bool:
    if not spec.options.first_install or spec.kind is not RunKind.DEPLOY:
        return False
    if spec.member is None or spec.app is None:
        return False
    return not ever_released(spec.member, spec.app)
