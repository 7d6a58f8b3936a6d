"""Every run asks the windows gate first."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from controlplane.deploy.model import RunKind, RunSpec
from controlplane.errors import GateClosed
from controlplane.windows.gate import Gate


def gate_spec(gate: Gate | None, spec: RunSpec, now: datetime) -> RunSpec:
    """The spec with the gate's decision recorded, or ``GateClosed`` naming the freeze or
    missing window and the next opening.

    Plans (check mode) and drift checks change nothing and are always allowed.
    ``first_install`` (set by ``provision`` when no instance of the app answers at all) lets
    a first install through a freeze: a freeze protects what runs, and nothing runs yet."""
    if gate is None or spec.params.get("check") or spec.kind is RunKind.DRIFT:
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
    if refused and spec.params.get("first_install") and spec.kind is RunKind.DEPLOY:
        note = f"first install, nothing live to protect; the gate said: {note}"
    elif refused:
        raise GateClosed(refused[0].message, refused[0])
    gate_record = {"reason": decisions[0].reason.value, "message": note}
    return replace(spec, params={**spec.params, "gate": gate_record})
