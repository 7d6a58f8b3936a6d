"""Read ``windows.yml`` from a fleet directory into validated windows.

A fleet without the file has no windows. Problems are one ``FleetInvalid`` line naming the
file and the field, exactly like the other fleet files (same YAML reader, same validation).
A window without ``timezone`` gets the datacenter's (``Europe/Amsterdam`` by default).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from controlplane.clock import Clock, utc_now
from controlplane.errors import FleetInvalid
from controlplane.fleet.loader import read_yaml, validate_as
from controlplane.fleet.model import Fleet
from controlplane.windows.gate import DEFAULT_HORIZON, Gate
from controlplane.windows.rules import Window, check_windows

FILE = "windows.yml"


def parse_windows(doc: Any, fleet: Fleet, file: str) -> tuple[Window, ...]:
    """Validate a parsed ``windows.yml`` document against the fleet."""
    if doc is None:
        return ()
    if not isinstance(doc, dict):
        raise FleetInvalid("", "must be a mapping with one key, windows", file)
    unknown = sorted(str(k) for k in doc if k != "windows")
    if unknown:
        raise FleetInvalid(unknown[0], "unknown field", file)
    items = doc.get("windows") or []
    if not isinstance(items, list):
        raise FleetInvalid("windows", "must be a list", file)
    raw = [{"timezone": fleet.timezone, **i} if isinstance(i, dict) else i for i in items]
    try:
        windows = validate_as(tuple[Window, ...], raw, "windows")
        return check_windows(windows, fleet)
    except FleetInvalid as exc:
        raise exc.in_file(file) from None


def load_windows(directory: Path, fleet: Fleet) -> tuple[Window, ...]:
    """The windows of the fleet in ``directory``; none when it has no ``windows.yml``."""
    path = directory / FILE
    if not path.exists():
        return ()
    return parse_windows(read_yaml(path), fleet, str(path))


def load_gate(
    directory: Path,
    fleet: Fleet,
    horizon: timedelta = DEFAULT_HORIZON,
    clock: Clock | None = utc_now,
) -> Gate:
    """A gate over the fleet's windows, holding the moments asked about near ``clock``."""
    return Gate(fleet, load_windows(directory, fleet), horizon=horizon, clock=clock)
