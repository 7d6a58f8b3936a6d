"""What a preflight found, as ``validate --json`` shows it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class PreflightProblemOut(BaseModel):
    """One problem: ``message`` is the whole line, starting with the host when there is one."""

    host: str | None
    kind: Literal["config", "unreachable"]
    message: str


class PreflightHostOut(BaseModel):
    """One host as the preflight saw it. ``reached`` is None when nothing connected to it
    (a ``local`` host, or ``validate`` without ``--connect``)."""

    host: str
    connection: str
    reached: bool | None
    python: str | None
    python_version: str | None
    process_manager: str


class PreflightOut(BaseModel):
    """``ok``; ``failed`` when any problem is the configuration's; ``unreachable`` when the
    only problems are hosts that could not be reached."""

    status: Literal["ok", "failed", "unreachable"]
    connect: bool
    hosts: list[PreflightHostOut]
    problems: list[PreflightProblemOut]
