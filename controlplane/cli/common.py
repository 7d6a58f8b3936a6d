"""Options and output helpers shared by every CLI module (kept apart to avoid import cycles)."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

from controlplane.access.policy import Principal
from controlplane.app import Context, build_context

out = Console()
err = Console(stderr=True)

FleetOpt = Annotated[
    Path | None,
    typer.Option(
        "--fleet", help="Fleet directory (default $CONTROLPLANE_FLEET or inventories/lab)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def context(fleet: Path | None = None, **overrides: Any) -> Context:
    return build_context(fleet, **overrides)


def who() -> str:
    """Who runs the CLI: $CONTROLPLANE_USER, else the login user at this machine."""
    user = os.environ.get("CONTROLPLANE_USER")
    if user:
        return user
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return f"{name}@{socket.gethostname()}"


def me() -> Principal:
    """The local CLI's caller: it can read the database and the vault anyway."""
    return Principal.local(who())


def print_json(data: BaseModel | Sequence[BaseModel] | Any) -> None:
    """Response models exactly as the HTTP API returns them; plain data as it is."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list | tuple) and all(isinstance(d, BaseModel) for d in data):
        data = [d.model_dump(mode="json") for d in data]
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
