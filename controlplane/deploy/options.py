"""A run's options: the typed record of how it was asked to run.

Stored as one JSON document (``runs.options``). Everything that decides how a run executes
lives here as a named, validated field, so no code reads a free-form dict to find out
whether a run is a plan, how many hosts go per batch or which window started it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.clock import as_utc
from controlplane.errors import InvalidInput

# Ansible's ``serial``: a host count or a percentage of the hosts.
_SERIAL_RE = re.compile(r"^(?:[1-9]\d*|(?:100|[1-9]\d?(?:\.\d+)?|0\.\d*[1-9]\d*)%)$")


def _text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{where}.{key}: expected text, got {type(value).__name__}")
    return value


def _flag(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _section(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    if value is not None and not isinstance(value, Mapping):
        raise InvalidInput(f"{where}.{key}: expected an object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class GateRecord:
    """What the windows gate decided when the run was submitted."""

    reason: str
    message: str

    def __post_init__(self) -> None:
        if not self.reason:
            raise InvalidInput("gate.reason: must not be empty")

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> GateRecord:
        return GateRecord(
            reason=_text(data, "reason", "gate") or "", message=_text(data, "message", "gate") or ""
        )


@dataclass(frozen=True)
class ScheduleRef:
    """The scheduled job that started a run, and the occurrence it was started for: the
    start of the window occurrence, or the moment a missed job was due."""

    job: str
    occurrence: datetime | None = None
    window: str | None = None
    silence_id: str | None = None

    def __post_init__(self) -> None:
        if not self.job:
            raise InvalidInput("schedule.job: must not be empty")
        if self.occurrence is not None:
            if self.occurrence.tzinfo is None:
                raise InvalidInput("schedule.occurrence: must carry a time zone")
            object.__setattr__(self, "occurrence", as_utc(self.occurrence))

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "occurrence": None if self.occurrence is None else self.occurrence.isoformat(),
            "window": self.window,
            "silence_id": self.silence_id,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> ScheduleRef:
        text = _text(data, "occurrence", "schedule")
        try:
            occurrence = None if text is None else datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"schedule.occurrence: {text!r} is not an ISO 8601 time") from None
        return ScheduleRef(
            job=_text(data, "job", "schedule") or "",
            occurrence=occurrence,
            window=_text(data, "window", "schedule"),
            silence_id=_text(data, "silence_id", "schedule"),
        )


@dataclass(frozen=True)
class PlaybookVars:
    """Inputs only the drift check takes: where the members' vault files are, and which
    versions each app has marked broken (their health check is expected to fail)."""

    vault_dir: str | None = None
    broken_versions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        fixed: dict[str, tuple[str, ...]] = {}
        for app, versions in self.broken_versions.items():
            if not isinstance(app, str) or isinstance(versions, str):
                raise InvalidInput(f"vars.broken_versions.{app}: expected a list of versions")
            fixed[app] = tuple(str(v) for v in versions)
        object.__setattr__(self, "broken_versions", fixed)

    def to_json(self) -> dict[str, Any]:
        return {
            "vault_dir": self.vault_dir,
            "broken_versions": {k: list(v) for k, v in self.broken_versions.items()},
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> PlaybookVars:
        broken = _section(data, "broken_versions", "vars") or {}
        for app, versions in broken.items():
            if not isinstance(versions, list | tuple):
                raise InvalidInput(f"vars.broken_versions.{app}: expected a list of versions")
        return PlaybookVars(
            vault_dir=_text(data, "vault_dir", "vars"),
            broken_versions={k: tuple(v) for k, v in broken.items()},
        )


@dataclass(frozen=True)
class RunOptions:
    """How a run was asked to run. ``serial`` is in Ansible's form (``2`` or ``50%``).
    ``record``: once the run succeeded, the fleet's ``stacks.yml`` declares its version."""

    check: bool = False
    serial: str | None = None
    max_fail_percentage: float | None = None
    broken: bool = False
    first_install: bool = False
    gate: GateRecord | None = None
    schedule: ScheduleRef | None = None
    vars: PlaybookVars = field(default_factory=PlaybookVars)
    record: bool = False

    def __post_init__(self) -> None:
        if self.serial is not None and not _SERIAL_RE.fullmatch(self.serial):
            raise InvalidInput(
                f"serial: {self.serial!r} is not a host count (2) or a percentage (50%)"
            )
        if self.max_fail_percentage is not None:
            if isinstance(self.max_fail_percentage, bool) or not isinstance(
                self.max_fail_percentage, int | float
            ):
                raise InvalidInput("max_fail_percentage: expected a number")
            if not 0 <= self.max_fail_percentage <= 100:
                raise InvalidInput(
                    f"max_fail_percentage: {self.max_fail_percentage} must be between 0 and 100"
                )
            object.__setattr__(self, "max_fail_percentage", float(self.max_fail_percentage))

    def extravars(self) -> dict[str, Any]:
        """The playbook variables these options set (rollout size, failure limit, drift)."""
        out: dict[str, Any] = {}
        if self.serial is not None:
            out["cp_serial"] = self.serial
        if self.max_fail_percentage is not None:
            out["cp_max_fail_percentage"] = self.max_fail_percentage
        if self.vars.vault_dir is not None:
            out["cp_vault_dir"] = self.vars.vault_dir
        if self.vars.broken_versions:
            out["cp_broken_versions"] = {k: list(v) for k, v in self.vars.broken_versions.items()}
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "serial": self.serial,
            "max_fail_percentage": self.max_fail_percentage,
            "broken": self.broken,
            "first_install": self.first_install,
            "gate": None if self.gate is None else self.gate.to_json(),
            "schedule": None if self.schedule is None else self.schedule.to_json(),
            "vars": self.vars.to_json(),
            "record": self.record,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> RunOptions:
        """Read a stored document. Keys this version does not know are ignored, so a node
        still on the previous release can read runs a newer node wrote."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"options: expected an object, got {type(data).__name__}")
        where = "options"
        max_fail = data.get("max_fail_percentage")
        if max_fail is not None and (
            isinstance(max_fail, bool) or not isinstance(max_fail, int | float)
        ):
            raise InvalidInput(f"options.max_fail_percentage: expected a number, got {max_fail!r}")
        gate = _section(data, "gate", where)
        schedule = _section(data, "schedule", where)
        return RunOptions(
            check=_flag(data, "check", where),
            serial=_text(data, "serial", where),
            max_fail_percentage=max_fail,
            broken=_flag(data, "broken", where),
            first_install=_flag(data, "first_install", where),
            gate=None if gate is None else GateRecord.from_json(gate),
            schedule=None if schedule is None else ScheduleRef.from_json(schedule),
            vars=PlaybookVars.from_json(_section(data, "vars", where) or {}),
            record=_flag(data, "record", where),
        )
