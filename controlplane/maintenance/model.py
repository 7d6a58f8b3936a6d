"""Maintenance jobs, as declared in the fleet's ``maintenance.yml``: pure and validated."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from pydantic import ConfigDict, Field, StrictStr, model_validator
from pydantic.dataclasses import dataclass as record

from controlplane.deploy.rollout import Serial, parse_max_fail
from controlplane.errors import InvalidInput
from controlplane.fleet.model import SLUG_RE

STRICT = ConfigDict(extra="forbid")


class JobKind(Enum):
    PATCH = "patch"  # the host patch playbook on the job's hosts
    DRIFT = "drift"  # the drift check (check mode) on the job's hosts


@record(frozen=True, config=STRICT)
class MaintenanceJob:
    """Work that starts when a maintenance window opens (``window``) or on a ``cron``
    schedule in the fleet's time zone; ``serial`` hosts at a time, stopping once a batch's
    failures exceed ``max_fail``."""

    name: Annotated[StrictStr, Field(pattern=SLUG_RE.pattern, max_length=63)]
    kind: JobKind
    window: StrictStr | None = None
    cron: StrictStr | None = None
    hosts: tuple[StrictStr, ...] = ()
    serial: StrictStr = "1"
    max_fail: StrictStr = "0%"

    @model_validator(mode="after")
    def _check(self) -> MaintenanceJob:
        if (self.window is None) == (self.cron is None):
            raise ValueError("give exactly one of window (start when it opens) or cron")
        try:
            Serial.parse(self.serial)
            parse_max_fail(self.max_fail)
        except InvalidInput as exc:
            raise ValueError(str(exc).replace("--", "")) from None
        return self

    @property
    def playbook(self) -> str:
        return "patch.yml" if self.kind is JobKind.PATCH else "drift.yml"
