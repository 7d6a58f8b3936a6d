"""Pure rollout logic: batch sizes, failure thresholds, and what to do after a batch failed."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from controlplane.errors import InvalidInput

_SERIAL_RE = re.compile(r"(?:([0-9]+)|([0-9]+(?:\.[0-9]+)?)%)")
_PERCENT_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)%?")


@dataclass(frozen=True)
class Serial:
    """Hosts per batch: a count, or a percentage of the hosts (Ansible's ``serial``)."""

    count: int | None = None
    percent: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise InvalidInput("serial: give a host count (2) or a percentage (50%)")
        if self.count is not None and self.count < 1:
            raise InvalidInput("serial: the batch size must be at least 1")
        if self.percent is not None and not 0 < self.percent <= 100:
            raise InvalidInput("serial: a percentage must be above 0% and at most 100%")

    @staticmethod
    def parse(text: str) -> Serial:
        match = _SERIAL_RE.fullmatch(text.strip())
        if not match:
            raise InvalidInput(f"serial: {text!r} is not a host count (2) or percentage (50%)")
        if match.group(1) is not None:
            return Serial(count=int(match.group(1)))
        return Serial(percent=float(match.group(2)))

    def batch_size(self, hosts: int) -> int:
        if self.count is not None:
            return max(1, min(self.count, hosts))
        assert self.percent is not None
        # Ansible rounds a percentage down, with at least one host per batch.
        return max(1, math.floor(hosts * self.percent / 100))

    def for_ansible(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"


def parse_max_fail(text: str) -> float:
    """``max_fail`` (P%): the rollout stops when a batch's failures exceed P percent."""
    match = _PERCENT_RE.fullmatch(text.strip())
    if not match:
        raise InvalidInput(f"max_fail: {text!r} is not a percentage like 25%")
    value = float(match.group(1))
    if not 0 <= value <= 100:
        raise InvalidInput(f"max_fail: {text!r} must be between 0% and 100%")
    return value


def batches(hosts: list[str], serial: Serial | None) -> list[list[str]]:
    """The batches Ansible will form, in order (for the plan and the progress display)."""
    if serial is None or not hosts:
        return [list(hosts)] if hosts else []
    size = serial.batch_size(len(hosts))
    return [hosts[i : i + size] for i in range(0, len(hosts), size)]


class HostState(Enum):
    SWITCHED = "switched"  # the new release is live and healthy
    UNCHANGED = "unchanged"  # already on the version, healthy
    FAILED = "failed"  # the run reached the host and something failed (e.g. health gate)
    UNREACHABLE = "unreachable"
    NOT_RUN = "not_run"  # the rollout stopped before this host's batch


@dataclass(frozen=True)
class ReleaseReport:
    """One instance's release before and after a playbook, as reported by the host."""

    host: str
    member: str
    app: str
    port: int
    before: str | None
    after: str | None
    healthy: bool
    # A plan (check mode) only: the release a deploy would switch to (None: it would stay
    # on ``before``), and whether it would restart the app.
    planned_after: str | None = None
    would_restart: bool | None = None


@dataclass(frozen=True)
class HostVerdict:
    host: str
    state: HostState
    before: str | None
    after: str | None
    reason: str | None = None  # why an unreachable host was not reached (a short phrase)


@dataclass(frozen=True)
class RolloutVerdict:
    hosts: tuple[HostVerdict, ...]

    @property
    def succeeded(self) -> bool:
        return all(h.state in (HostState.SWITCHED, HostState.UNCHANGED) for h in self.hosts)

    def rollback_plan(self) -> dict[str, list[str]]:
        """Release to return to -> hosts, for every host that left its last good release
        in a rollout that did not succeed."""
        plan: dict[str, list[str]] = {}
        if self.succeeded:
            return plan
        for h in self.hosts:
            moved = h.state in (HostState.SWITCHED, HostState.FAILED) and h.after != h.before
            if moved and h.before is not None:
                plan.setdefault(h.before, []).append(h.host)
        return plan

    def without_previous_release(self) -> list[str]:
        """Hosts that failed on a fresh install: there is nothing to roll back to."""
        return [h.host for h in self.hosts if h.state is HostState.FAILED and h.before is None]


def judge(
    hosts: list[str],
    version: str,
    reports: list[ReleaseReport],
    failed: Collection[str],
    unreachable: Collection[str],
) -> RolloutVerdict:
    """Each host's fate from its reports and the run's per-host stats. ``unreachable`` may
    map each host to the reason it was not reached."""
    by_host: dict[str, list[ReleaseReport]] = {}
    for r in reports:
        by_host.setdefault(r.host, []).append(r)
    verdicts: list[HostVerdict] = []
    for host in hosts:
        mine = by_host.get(host, [])
        before = _common(r.before for r in mine)
        after = _common(r.after for r in mine)
        reason = None
        if host in unreachable:
            state = HostState.UNREACHABLE
            reason = unreachable[host] if isinstance(unreachable, Mapping) else "unreachable"
        elif host in failed or any(not r.healthy for r in mine):
            state = HostState.FAILED
        elif not mine:
            state = HostState.NOT_RUN
        elif all(r.after == version for r in mine):
            state = (
                HostState.UNCHANGED
                if all(r.before == version for r in mine)
                else HostState.SWITCHED
            )
        else:
            state = HostState.FAILED
        verdicts.append(HostVerdict(host, state, before, after, reason))
    return RolloutVerdict(tuple(verdicts))


def _common(values: Iterable[str | None]) -> str | None:
    # A host runs one instance of a member's app; if it ever ran two, report the first.
    return next(iter(values), None)
