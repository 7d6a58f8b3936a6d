"""The fleet's ``notifications.yml``: webhook targets, validated like the other fleet files.

Each target names a URL, the events it wants, optionally the members it cares about (and,
for ``run.finished``, the run statuses), and where its signing secret comes from: an
environment variable (``secret_env``) or a key in a vault file of the fleet
(``secret_vault: {file, key}``). The file holds only those names, never a secret; the
secret is read when ``serve`` starts (see ``controlplane.notify.secrets``).
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict, Field, StrictStr, model_validator
from pydantic.dataclasses import dataclass as record

from controlplane.errors import FleetInvalid
from controlplane.fleet.loader import read_yaml, validate_as
from controlplane.fleet.model import Fleet
from controlplane.fleet.patterns import Slug
from controlplane.fleet.vault import vault_file

FILE = "notifications.yml"
STRICT = ConfigDict(extra="forbid")

ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
VAULT_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")


class EventType(StrEnum):
    """What a target can be told about; the payload's ``type``."""

    RUN_FINISHED = "run.finished"  # successful, failed, canceled, timed out or interrupted
    EMERGENCY_OVERRIDE = "emergency.override"  # a run let through a closed gate
    WINDOW_OPENED = "window.opened"  # a maintenance window or freeze began
    WINDOW_CLOSED = "window.closed"  # ... and ended
    MAINTENANCE_SKIPPED = "maintenance.skipped"  # scheduled work that did not start


class FinishedStatus(StrEnum):
    """The statuses a ``run.finished`` event carries (skipped work is its own event)."""

    SUCCESSFUL = "successful"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"


def check_url(value: str) -> str:
    """An http(s) URL with a host, and no credentials or fragment: deliveries, logs and
    errors name the target, but a URL must never be where a secret hides."""
    if len(value) > 2000 or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError(f"{value[:80]!r} is not a URL (too long, or spaces in it)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are refused; the signature authenticates")
    if parts.fragment:
        raise ValueError("a URL fragment is never sent; remove it")
    if port == 0:
        raise ValueError("port 0 is not a port")
    return value


WebhookUrl = Annotated[StrictStr, AfterValidator(check_url)]
EnvName = Annotated[StrictStr, Field(pattern=ENV_RE.pattern, max_length=100)]
VaultKey = Annotated[StrictStr, Field(pattern=VAULT_KEY_RE.pattern, max_length=200)]


@record(frozen=True, config=STRICT)
class VaultRef:
    """A secret in the fleet's ``vault/<file>.yml`` (Ansible Vault), at the dotted ``key``."""

    file: Slug
    key: VaultKey


@record(frozen=True, config=STRICT)
class Target:
    name: Slug
    url: WebhookUrl
    events: Annotated[tuple[EventType, ...], Field(min_length=1)]
    members: tuple[Slug, ...] | None = None
    run_statuses: tuple[FinishedStatus, ...] | None = None
    secret_env: EnvName | None = None
    secret_vault: VaultRef | None = None

    @model_validator(mode="after")
    def _check(self) -> Target:
        if (self.secret_env is None) == (self.secret_vault is None):
            raise ValueError("give exactly one of secret_env or secret_vault")
        if len(set(self.events)) != len(self.events):
            raise ValueError("events: an event is listed twice")
        if self.members is not None and not self.members:
            raise ValueError("members: leave it out to hear about every member")
        if self.run_statuses is not None:
            if not self.run_statuses:
                raise ValueError("run_statuses: leave it out to hear about every status")
            if EventType.RUN_FINISHED not in self.events:
                raise ValueError("run_statuses only applies with the run.finished event")
        return self

    @property
    def secret_source(self) -> str:
        """Where the secret comes from, for messages (never the secret)."""
        if self.secret_env is not None:
            return f"environment variable {self.secret_env}"
        assert self.secret_vault is not None
        return f"vault/{self.secret_vault.file}.yml key {self.secret_vault.key}"


def notifications_path(directory: Path) -> Path:
    return directory / FILE


def load_targets(directory: Path, fleet: Fleet) -> tuple[Target, ...]:
    """The fleet's webhook targets; none when the file is absent."""
    path = notifications_path(directory)
    if not path.exists():
        return ()
    doc = read_yaml(path)
    try:
        return parse_targets(doc, fleet, directory)
    except FleetInvalid as exc:
        raise exc.in_file(str(path)) from None


def parse_targets(doc: object, fleet: Fleet, directory: Path) -> tuple[Target, ...]:
    """Validate a parsed ``notifications.yml`` against the fleet (its members, its vault)."""
    if doc is None:
        return ()
    if not isinstance(doc, dict) or set(doc) - {"targets"}:
        raise FleetInvalid("", "must be a mapping with one key, targets")
    raw = doc.get("targets")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise FleetInvalid("targets", "must be a list")
    targets = validate_as(tuple[Target, ...], raw, "targets")
    members = {m.slug for m in fleet.members}
    seen: set[str] = set()
    for t in targets:
        where = f"targets[{t.name}]"
        if t.name in seen:
            raise FleetInvalid(f"{where}.name", f"duplicate name {t.name!r}")
        seen.add(t.name)
        for member in t.members or ():
            if member not in members:
                raise FleetInvalid(f"{where}.members", f"unknown member {member!r}")
        if t.secret_vault is not None:
            vault = vault_file(directory, t.secret_vault.file)
            if not vault.is_file():
                raise FleetInvalid(f"{where}.secret_vault.file", f"no such file {vault}")
    return targets
