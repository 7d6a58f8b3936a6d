"""Why a host failed, in one line: its first failing task and message, read from the run's
events, with ssh's and Ansible Vault's messages turned into short phrases.

Pure. The events are the scrubbed ones ``deploy.events`` keeps (a ``no_log`` task's result
is never among them), and what the engine knows of the setup (each host's key file and
whether it exists, the member's vault file, whether a vault password is configured) comes
in as a ``Setup``. Each reason also says what kind of failure it is, which is what the run's
exit code follows: ``config`` (2), ``unreachable`` (4) or ``failed`` (1).

Examples: ``health gate: GET /healthz answered 503 for 15 s``,
``unreachable: SSH authentication failed (key keys/client_key)``,
``vault password not configured (set CONTROLPLANE_VAULT_PASSWORD_FILE)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane.deploy.events import FAILURE_EVENTS, REPORT_TASK, mask
from controlplane.deploy.model import RunEvent, RunFailure
from controlplane.fleet.vault import PASSWORD_SETTING

MAX_REASON = 200
# The deploy role's task that loads the member's vault (no_log: its failure says nothing).
VAULT_TASK = "Load the member's secrets from its vault file"

# Wrappers Ansible, ansible-runner and mitogen put around the words that matter.
_WRAPPERS = re.compile(
    r"^(?:Task failed: |Module failed: |Action failed: |Failed to connect to the host via ssh: "
    r"|Data could not be sent to remote host \"[^\"]*\"\. Make sure this host can be reached "
    r"over ssh: |EOF on stream; last 100 lines received: |ssh: )+"
)
_HOST_KEY_SIGNS = (
    "host key verification failed",
    "remote host identification has changed",
    "mismatching host key",
    "host key for",
)
_AUTH_SIGNS = (
    "permission denied",
    "authentication is incorrect",  # mitogen
    "authentication failed",
    "too many authentication failures",
    "no supported authentication methods",
)
_MISSING_KEY = re.compile(r"identity file (\S+) not accessible", re.IGNORECASE)
_SSH_PHRASES = (
    (("connection refused",), "SSH connection refused"),
    (("timed out", "timeout"), "SSH connection timed out"),
    (("no route to host",), "no route to host"),
    (
        (
            "could not resolve",
            "name or service not known",
            "temporary failure in name resolution",
            "nodename nor servname",
        ),
        "host name does not resolve",
    ),
    (("connection closed", "connection reset"), "SSH connection closed by the host"),
)
_NO_VAULT_SECRETS = ("no vault secrets found", "attempting to decrypt but no vault secrets")
_DECRYPT_FAILED = re.compile(r"decryption failed.*?(?: on (\S+?))?\.?$", re.IGNORECASE)
_VAULT_MISSING = re.compile(r"vault file (\S+) missing")
_PASSWORD_FILE_MISSING = re.compile(r"vault password file (\S+?) was not found", re.IGNORECASE)
_PLAY_ERROR = re.compile(r"^(?:\[ERROR\]:|ERROR!)\s*(.*)$")


@dataclass(frozen=True)
class HostReason:
    """One host's reason (one line) and the kind of failure it is."""

    text: str
    kind: RunFailure


@dataclass(frozen=True)
class Setup:
    """What the engine knows of a run's setup. Paths are shown relative to ``fleet_dir``."""

    fleet_dir: Path | None = None
    keys: Mapping[str, str] = field(default_factory=dict)  # host -> its private key file
    missing_keys: frozenset[str] = frozenset()  # hosts whose key file does not exist
    vault_file: str | None = None  # the member's vault file
    vault_password: bool = True  # a vault password file is configured
    secrets: tuple[str, ...] = ()  # values masked wherever they appear

    def shown(self, path: str | Path) -> str:
        p = Path(path)
        if self.fleet_dir is not None:
            try:
                return str(p.relative_to(self.fleet_dir))
            except ValueError:
                pass
        return str(p)


def one_line(text: Any, limit: int = MAX_REASON) -> str:
    """``text`` on one line, without Ansible's wrappers, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    flat = _WRAPPERS.sub("", flat).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def host_reasons(events: Iterable[RunEvent], setup: Setup = Setup()) -> dict[str, HostReason]:
    """Each failed or unreachable host's reason: its first failing task that was not
    ignored, and that task's message."""
    events = list(events)
    out: dict[str, HostReason] = {}
    for e in events:
        if e.event not in FAILURE_EVENTS or not e.host or e.host in out or e.data.get("ignored"):
            continue
        if e.event == "runner_on_unreachable":
            reason = unreachable(e.host, e.data.get("msg"), setup)
        else:
            reason = failed(e.task, e.data.get("msg"), setup, hidden=bool(e.data.get("no_log")))
            told = _reported_error(events, e.host)
            if reason.kind is RunFailure.FAILED and told and told.startswith(f"{e.task}: "):
                # The role's report says the same with the command's output ("Address
                # already in use"), which the event's message ("non-zero return code") lacks.
                reason = HostReason(one_line(told), RunFailure.FAILED)
        out[e.host] = _scrubbed(reason, setup)
    return out


def _reported_error(events: list[RunEvent], host: str) -> str | None:
    """The ``error`` of the host's release report (the deploy role's account of its first
    failure, see failure.yml), if it sent one."""
    for e in events:
        report = e.data.get("report")
        if e.host == host and e.task == REPORT_TASK and isinstance(report, Mapping):
            error = report.get("error")
            if isinstance(error, str) and error:
                return error
    return None


def unreachable(host: str, msg: Any, setup: Setup = Setup()) -> HostReason:
    """Why ssh (or mitogen) could not reach ``host``, as a short phrase."""
    text = str(msg or "")
    low = text.lower()
    key = setup.keys.get(host)
    missing = _MISSING_KEY.search(text)
    if host in setup.missing_keys or missing:
        named = key or (missing.group(1) if missing else "")
        return HostReason(f"key file {setup.shown(named)} missing", RunFailure.CONFIG)
    if any(sign in low for sign in _HOST_KEY_SIGNS) or "host key is known" in low:
        phrase = "host key mismatch"
    elif any(sign in low for sign in _AUTH_SIGNS):
        which = f"key {setup.shown(key)}" if key else "no key file configured"
        phrase = f"SSH authentication failed ({which})"
    else:
        phrase = next(
            (p for signs, p in _SSH_PHRASES if any(s in low for s in signs)),
            one_line(text) or "no answer",
        )
    return HostReason(one_line(f"unreachable: {phrase}"), RunFailure.UNREACHABLE)


def failed(
    task: str | None, msg: Any, setup: Setup = Setup(), *, hidden: bool = False
) -> HostReason:
    """A failed task's reason: ``"<task>: <message>"``, or the vault problem it shows."""
    text = "" if msg is None else str(msg)
    vault = vault_problem(text, setup)
    if vault is not None:
        return HostReason(vault, RunFailure.CONFIG)
    if hidden and task == VAULT_TASK:
        # include_vars is no_log: a vault that will not open says nothing more.
        if not setup.vault_password:
            return HostReason(_NO_PASSWORD, RunFailure.CONFIG)
        name = setup.shown(setup.vault_file) if setup.vault_file else "of the member"
        return HostReason(
            f"vault file {name} does not open with the configured vault password "
            f"({PASSWORD_SETTING})",
            RunFailure.CONFIG,
        )
    if hidden:
        text = "failed; its output is hidden (no_log)"
    body = one_line(text) or "failed"
    return HostReason(one_line(f"{task}: {body}" if task else body), RunFailure.FAILED)


_NO_PASSWORD = f"vault password not configured (set {PASSWORD_SETTING})"


def vault_problem(msg: str, setup: Setup = Setup()) -> str | None:
    """Ansible Vault's messages (and the deploy role's own) as one line, or None."""
    low = msg.lower()
    if any(sign in low for sign in _NO_VAULT_SECRETS):
        return _NO_PASSWORD
    flat = " ".join(msg.split())
    decrypt = _DECRYPT_FAILED.search(flat)
    if decrypt:
        where = decrypt.group(1) or setup.vault_file
        name = f"vault file {setup.shown(where)}" if where else "the vault file"
        return f"{name} does not decrypt with the configured vault password ({PASSWORD_SETTING})"
    missing = _VAULT_MISSING.search(flat)
    if missing:
        return f"vault file {setup.shown(missing.group(1))} missing"
    password = _PASSWORD_FILE_MISSING.search(flat)
    if password:
        return f"vault password file {setup.shown(password.group(1))} missing ({PASSWORD_SETTING})"
    return None


def play_error(stdout: str, setup: Setup = Setup()) -> HostReason | None:
    """A playbook that failed before any host did (a vault it could not open, a syntax
    error): its first ``ERROR`` line from the run's stdout, or None."""
    for line in stdout.splitlines():
        found = _PLAY_ERROR.match(line.strip())
        if found and found.group(1):
            return _scrubbed(failed(None, found.group(1), setup), setup)
    return None


def run_failure(kinds: Iterable[RunFailure]) -> RunFailure:
    """The kind of a failed run from its bad hosts' kinds: a task or gate that failed wins
    (exit 1), then a configuration problem (2); unreachable (4) only when that is all."""
    seen = set(kinds)
    if not seen or RunFailure.FAILED in seen:
        return RunFailure.FAILED
    if RunFailure.CONFIG in seen:
        return RunFailure.CONFIG
    return RunFailure.UNREACHABLE


def _scrubbed(reason: HostReason, setup: Setup) -> HostReason:
    text = mask(reason.text, setup.secrets)
    return HostReason(one_line(text), reason.kind)
