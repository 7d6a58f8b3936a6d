"""One error tree for the whole package.

Each error also subclasses the matching builtin, so callers that only know Python's
own exceptions still catch them. Exit codes and HTTP codes are assigned at the edges
(``cli.py``, ``api/``), never here.
"""

from __future__ import annotations


class ControlPlaneError(Exception):
    """Base of every error the control plane raises on purpose."""


class InvalidInput(ControlPlaneError, ValueError):
    """The caller gave something malformed: a file, a flag, a request body."""


class FleetInvalid(InvalidInput):
    """A fleet description failed validation.

    ``where`` names the file (when known) and the field path, so the message is one line
    a human can act on.
    """

    def __init__(self, field: str, problem: str, file: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.file = file
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.file}: " if self.file else ""
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.problem}"

    def in_file(self, file: str) -> FleetInvalid:
        """The same error, now naming the file it came from."""
        return FleetInvalid(self.field, self.problem, file)


class NotFound(ControlPlaneError, LookupError):
    """A named thing does not exist."""


class MemberNotFound(NotFound):
    pass


class AppNotFound(NotFound):
    pass


class HostNotFound(NotFound):
    pass


class VersionNotFound(NotFound):
    pass


class RunNotFound(NotFound):
    pass


class Refused(ControlPlaneError, PermissionError):
    """The request was well-formed but is not allowed now (gate, lock, permission)."""


class LockHeld(Refused):
    def __init__(self, key: str, holder_run_id: str) -> None:
        self.key = key
        self.holder_run_id = holder_run_id
        super().__init__(f"{key} is locked by run {holder_run_id}")


class Unreachable(ControlPlaneError, ConnectionError):
    """A host or a dependency (database, Alertmanager) could not be reached."""


class PreflightFailed(InvalidInput):
    """A run's preflight found its configuration unusable (a key, known_hosts or vault
    file missing, a vault that does not decrypt). ``problems`` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class StoreUnavailable(Unreachable):
    pass


class OperationFailed(ControlPlaneError, RuntimeError):
    """The operation ran and failed."""


class GateClosed(Refused):
    """The windows gate refused a change: a freeze applies, or no maintenance window is open.

    ``decision`` is the gate's full ``Decision`` (reason, windows, next opening).
    """

    def __init__(self, message: str, decision: object = None) -> None:
        self.decision = decision
        super().__init__(message)


class PayloadTooLarge(InvalidInput):
    """A request body beyond the documented size limit."""


class Unauthenticated(Refused):
    """No credentials, or a token that is unknown, expired or revoked."""


class Forbidden(Refused):
    """The caller is known but its role may not do this (another member's objects are a
    ``NotFound`` instead, so their existence is not revealed)."""


class LeaseLost(ControlPlaneError, RuntimeError):
    """This process no longer holds the lease of the run it executes: another node took it
    over, so it must stop before its next play."""
