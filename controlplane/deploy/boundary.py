"""What may cross from the control plane into Ansible, checked before anything runs.

Only the package's own playbooks run, each with the extravars it documents
(docs/playbooks.md), every value of the expected type and pattern; a run names at least
one host, and only hosts of its inventory. Anything else is ``InvalidInput`` naming the
parameter, and nothing starts: an empty host list would otherwise mean every host of the
inventory, and a "{{ ... }}" in a value would be templated on the controller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlplane.deploy.rollout import Serial
from controlplane.errors import InvalidInput
from controlplane.fleet.patterns import (
    HEALTH_PATH_RE,
    HOSTNAME_RE,
    PATH_RE,
    SLUG_RE,
    check_version,
)
from controlplane.settings import PLAYBOOKS_DIR

_SERIAL_RE = re.compile(r"[1-9][0-9]{0,5}|[0-9]{1,3}(\.[0-9]+)?%")
_PATCH_LEVEL_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")

Check = Callable[[str, Any], Any]


def _slug(key: str, value: Any) -> Any:
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value):
        raise InvalidInput(f"{key}: {value!r} is not a slug like den-haag")
    return value


def _version(key: str, value: Any) -> Any:
    try:
        return check_version(value)
    except ValueError as exc:
        raise InvalidInput(f"{key}: {exc}") from None


def _bool(key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise InvalidInput(f"{key}: must be true or false, got {value!r}")
    return value


def _seconds(key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3600:
        raise InvalidInput(f"{key}: must be a whole number of seconds from 1 to 3600")
    return value


def _percent(key: str, value: Any) -> Any:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 <= value <= 100:
        raise InvalidInput(f"{key}: must be a number from 0 to 100, got {value!r}")
    return value


def _serial(key: str, value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and _SERIAL_RE.fullmatch(value):
        try:
            Serial.parse(value)
            return value
        except InvalidInput:
            pass
    raise InvalidInput(f"{key}: {value!r} is not a host count (2) or a percentage (50%)")


def _path(key: str, value: Any) -> Any:
    if not isinstance(value, str) or len(value) > 1024 or not PATH_RE.fullmatch(value):
        raise InvalidInput(f"{key}: {value!r} is not a plain file path")
    return value


def _health_path(key: str, value: Any) -> Any:
    if not isinstance(value, str) or not HEALTH_PATH_RE.fullmatch(value):
        raise InvalidInput(f"{key}: {value!r} is not a URL path like /healthz")
    return value


def _process_manager(key: str, value: Any) -> Any:
    if value not in ("pidfile", "systemd"):
        raise InvalidInput(f"{key}: must be pidfile or systemd, got {value!r}")
    return value


def _patch_mode(key: str, value: Any) -> Any:
    if value not in ("simulate", "apt"):
        raise InvalidInput(f"{key}: must be simulate or apt, got {value!r}")
    return value


def _patch_level(key: str, value: Any) -> Any:
    if not isinstance(value, str) or not _PATCH_LEVEL_RE.fullmatch(value):
        raise InvalidInput(f"{key}: {value!r} is not a patch level like 2024-06-01")
    return value


def _broken_versions(key: str, value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{key}: must map app slugs to lists of versions")
    out: dict[str, list[str]] = {}
    for app, versions in value.items():
        _slug(f"{key}.{app}", app)
        if not isinstance(versions, list | tuple):
            raise InvalidInput(f"{key}.{app}: must be a list of versions")
        out[app] = [_version(f"{key}.{app}[{i}]", v) for i, v in enumerate(versions)]
    return out


_ROLLOUT: dict[str, Check] = {"cp_serial": _serial, "cp_max_fail_percentage": _percent}
_RELEASE: dict[str, Check] = {
    "cp_member": _slug,
    "cp_app": _slug,
    "cp_version": _version,
    "cp_broken": _bool,
    "cp_health_path": _health_path,
    "cp_health_timeout": _seconds,
    "cp_vault_file": _path,
    "cp_process_manager": _process_manager,
    **_ROLLOUT,
}
# The extravars each playbook documents; nothing else is passed to it.
EXTRAVARS: dict[str, dict[str, Check]] = {
    "deploy.yml": _RELEASE,
    "rollback.yml": _RELEASE,
    "status.yml": {
        "cp_member": _slug,
        "cp_app": _slug,
        "cp_health_path": _health_path,
        "cp_process_manager": _process_manager,
    },
    "drift.yml": {
        "cp_member": _slug,
        "cp_app": _slug,
        "cp_vault_dir": _path,
        "cp_broken_versions": _broken_versions,
        "cp_process_manager": _process_manager,
        **_ROLLOUT,
    },
    "patch.yml": {"cp_patch_mode": _patch_mode, "cp_patch_level": _patch_level, **_ROLLOUT},
}
PLAYBOOKS = frozenset(EXTRAVARS)


@dataclass(frozen=True)
class CheckedRun:
    """A run that may start: the playbook's real path, its hosts and its extravars."""

    playbook: Path
    hosts: tuple[str, ...]
    extravars: dict[str, Any]


def resolve_playbook(playbook: str | Path, playbooks_dir: Path = PLAYBOOKS_DIR) -> Path:
    """The path of one of the package's playbooks; any other name or place is refused."""
    given = Path(playbook)
    if given.name not in PLAYBOOKS:
        known = ", ".join(sorted(PLAYBOOKS))
        raise InvalidInput(f"playbook: {given.name!r} is not one of the playbooks ({known})")
    home = playbooks_dir.resolve()
    path = (home / given.name).resolve()
    # A symlinked playbook, or a path naming another directory, must not run.
    outside = path.parent != home or (len(given.parts) > 1 and given.resolve() != path)
    if outside or not path.is_file():
        raise InvalidInput(f"playbook: {str(playbook)!r} is not in {home}")
    return path


def check_extravars(playbook: str, extravars: Mapping[str, Any]) -> dict[str, Any]:
    """The extravars, each allowed for this playbook and of the right type and pattern."""
    allowed = EXTRAVARS[playbook]
    out: dict[str, Any] = {}
    for key, value in extravars.items():
        check = allowed.get(key) if isinstance(key, str) else None
        if check is None:
            raise InvalidInput(f"extravars.{key}: not an extravar of {playbook}")
        out[key] = check(f"extravars.{key}", value)
    return out


def inventory_hosts(inventory: Mapping[str, Any]) -> set[str]:
    """Every host named anywhere in a rendered inventory."""
    found: set[str] = set()

    def walk(group: Any) -> None:
        if not isinstance(group, Mapping):
            return
        found.update(str(h) for h in group.get("hosts") or {})
        for child in (group.get("children") or {}).values():
            walk(child)

    for group in inventory.values():
        walk(group)
    return found


def check_hosts(limit: str | None, inventory: Mapping[str, Any]) -> tuple[str, ...]:
    """The run's hosts: at least one, each a plain host name of the inventory."""
    names = tuple(n.strip() for n in (limit or "").split(",") if n.strip())
    if not names:
        raise InvalidInput(
            "hosts: a run needs at least one host (no list would mean every host of the fleet)"
        )
    known = inventory_hosts(inventory)
    for name in names:
        if not HOSTNAME_RE.fullmatch(name) or name not in known:
            raise InvalidInput(f"hosts: {name!r} is not a host of the fleet")
    return tuple(dict.fromkeys(names))


def check_run(
    playbook: str | Path,
    inventory: Mapping[str, Any],
    extravars: Mapping[str, Any],
    limit: str | None,
) -> CheckedRun:
    """Everything ``run_playbook`` hands to Ansible, checked; raises ``InvalidInput``."""
    path = resolve_playbook(playbook)
    return CheckedRun(path, check_hosts(limit, inventory), check_extravars(path.name, extravars))
