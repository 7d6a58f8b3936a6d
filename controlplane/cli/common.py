"""Options and output helpers shared by every CLI module (kept apart to avoid import cycles)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)

FleetOpt = Annotated[
    Path | None,
    typer.Option(
        "--fleet", help="Fleet directory (default $CONTROLPLANE_FLEET or inventories/lab)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
