"""The access policy: roles, the caller as a ``Principal``, and ``authorize``.

Operations call ``authorize`` themselves, so the CLI, the API and the web pages cannot
disagree about who may do what. Another member's object is reported as not found, never
as forbidden, so its existence is not revealed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from controlplane.errors import Forbidden, NotFound


class Role(Enum):
    ADMIN = "admin"
    ENGINEER = "engineer"  # of one or more members
    BOARD = "board"
    METRICS = "metrics"


class Action(Enum):
    FLEET_READ = "fleet.read"
    RUNS_READ = "runs.read"  # runs, their hosts, events and logs
    RUNS_WRITE = "runs.write"  # launch (deploy, plan, rollback) and cancel
    WINDOWS_READ = "windows.read"
    SCHEDULE_READ = "schedule.read"
    UPTIME_READ = "uptime.read"
    COSTS_READ = "costs.read"  # allocations and reports
    METRICS_READ = "metrics.read"
    AUDIT_READ = "audit.read"
    TOKENS_ADMIN = "tokens.admin"


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.ENGINEER: frozenset(
        {
            Action.FLEET_READ,
            Action.RUNS_READ,
            Action.RUNS_WRITE,
            Action.WINDOWS_READ,
            Action.SCHEDULE_READ,
            Action.UPTIME_READ,
            Action.AUDIT_READ,
        }
    ),
    Role.BOARD: frozenset(
        {Action.FLEET_READ, Action.UPTIME_READ, Action.COSTS_READ, Action.AUDIT_READ}
    ),
    Role.METRICS: frozenset({Action.METRICS_READ}),
}


@dataclass(frozen=True)
class Principal:
    """The caller of an operation: a token's holder, or the local user of the CLI."""

    name: str
    role: Role
    members: frozenset[str] = field(default_factory=frozenset)
    token_id: str | None = None

    def __post_init__(self) -> None:
        if self.role is Role.ENGINEER and not self.members:
            raise ValueError("an engineer acts for at least one member")
        if self.role is not Role.ENGINEER and self.members:
            raise ValueError(f"role {self.role.value} is not limited to members")

    @staticmethod
    def local(name: str) -> Principal:
        """Whoever runs the CLI on the control-plane machine: it can read the database
        and the vault anyway, so it acts as admin."""
        return Principal(name=name, role=Role.ADMIN)

    @property
    def scoped(self) -> bool:
        """True when this caller sees only some members' objects."""
        return self.role is Role.ENGINEER

    def sees(self, member: str | None) -> bool:
        """May this caller see objects of ``member`` (``None``: objects of no member, such
        as a host patch run, which only unscoped roles see)?"""
        if not self.scoped:
            return True
        return member is not None and member in self.members

    def may(self, action: Action) -> bool:
        return action in PERMISSIONS[self.role]


def authorize(principal: Principal, action: Action, member: str | None = None) -> None:
    """Raise ``Forbidden`` when the role may not do ``action``, and ``NotFound`` when the
    object belongs to a member the caller does not see."""
    if not principal.may(action):
        raise Forbidden(f"role {principal.role.value} may not {action.value}")
    if member is not None and not principal.sees(member):
        raise NotFound(f"no member {member!r}")
