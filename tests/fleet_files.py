"""Write a ``Fleet`` model back out as a fleet directory, for tests that drive the CLI."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from controlplane.fleet.model import Fleet


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_fleet(fleet: Fleet, directory: Path, vault_from: Path | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    dump = lambda name, data: (directory / f"{name}.yml").write_text(  # noqa: E731
        yaml.safe_dump(_plain(data), sort_keys=False)
    )
    dump("datacenter", {"name": fleet.name, "timezone": fleet.timezone})
    dump("members", {"members": [asdict(m) for m in fleet.members]})
    dump("hosts", {"hosts": [asdict(h) for h in fleet.hosts]})
    dump("apps", {"apps": [asdict(a) for a in fleet.apps]})
    stacks: dict[str, Any] = {}
    for stack in fleet.stacks:
        stacks[stack.member] = {}
        for sa in stack.apps:
            body = asdict(sa)
            body.pop("app")
            stacks[stack.member][sa.app] = body
    dump("stacks", {"stacks": stacks})
    if vault_from is not None:
        if (vault_from / "vault").is_dir():
            shutil.copytree(vault_from / "vault", directory / "vault", dirs_exist_ok=True)
        if (vault_from / "vault-password").exists():
            shutil.copy(vault_from / "vault-password", directory / "vault-password")
    return directory
