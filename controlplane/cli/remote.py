"""The remote CLI: which control plane a command talks to, and following runs over HTTP.

With ``--server URL`` (or ``CONTROLPLANE_SERVER``) the run, fleet, windows, schedule, uptime
and costs commands call a running ``controlplane serve`` with ``CONTROLPLANE_TOKEN`` instead
of opening the database here; they print the same tables and JSON and exit with the same
codes. Commands that only make sense next to the database and the fleet files refuse a
server with one line (exit 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from pydantic import ValidationError

from controlplane.cli.common import err
from controlplane.client import (
    ControlPlaneClient,
    StreamEnd,
    check_server_url,
    event_record,
    exposes_token,
    host_record,
    run_record,
    server_label,
)
from controlplane.deploy.engine import Observer
from controlplane.deploy.model import RunStatus
from controlplane.deploy.operations import outcome_error
from controlplane.errors import InvalidInput
from controlplane.schemas.runs import RunDetailOut, RunOut
from controlplane.settings import Settings, load_settings


@dataclass(frozen=True)
class RootOptions:
    """What the root command was given; ``http`` lets a test hand in its own HTTP client
    (an in-process ``TestClient``) instead of a connection to a real server."""

    server: str | None = None
    http: httpx.Client | None = None


# Set by the root command on every invocation, read by the command it runs. (Typer ships
# its own copy of click, so click's current context is not reachable from here.)
_invocation: ContextVar[RootOptions | None] = ContextVar("invocation", default=None)


def begin(options: RootOptions) -> None:
    """Record what the root command was given, for the command it goes on to run."""
    _invocation.set(options)


def _root() -> RootOptions:
    return _invocation.get() or RootOptions()


def server_flag() -> str | None:
    """The ``--server`` given on the command line, if any."""
    return _root().server


def server_in_force() -> tuple[str, str] | None:
    """``(url, where it came from)`` when a server is chosen, by flag or settings."""
    flag = server_flag()
    if flag:
        return flag, "--server"
    try:
        # Only the server setting is wanted here: the command itself reports bad settings
        # and loose files, for the fleet it is given.
        configured = Settings().server
    except ValidationError:
        configured = None
    return (configured, "CONTROLPLANE_SERVER") if configured else None


def local_only(command: str) -> None:
    """Refuse a server: ``command`` works on this machine's database and files only."""
    chosen = server_in_force()
    if chosen is not None:
        raise InvalidInput(
            f"{command} is local-only: run it on the control plane's machine without {chosen[1]}"
        )


def remote(fleet: Path | None = None) -> ControlPlaneClient | None:
    """The client for the chosen server, or None to run the command here."""
    chosen = server_in_force()
    if chosen is None:
        return None
    if fleet is not None:
        raise InvalidInput("--fleet: the server uses its own fleet; leave it out with --server")
    url = check_server_url(chosen[0])
    token = load_settings().token
    secret = token.get_secret_value() if token is not None else None
    if secret is not None and exposes_token(url):
        # serve speaks plain HTTP; beyond this machine it belongs behind a TLS proxy.
        err.print(
            f"warning: the token goes in clear text to {server_label(url)}; use https://",
            markup=False,
            highlight=False,
        )
    return ControlPlaneClient(url, secret, http=_root().http)


def follow(client: ControlPlaneClient, runs: Sequence[RunOut], observer: Observer) -> None:
    """Show each run's progress from its event stream, as the local engine reports it to
    ``observer``; returns when every run has ended."""
    for submitted in runs:
        run = run_record(submitted)
        observer.on_status(run)
        for item in client.events(submitted.id):
            if isinstance(item, StreamEnd):
                observer.on_status(run_record(item.run))
                break
            if run.status is RunStatus.QUEUED:
                # Events only come from an executing run: it is running from here on.
                run = replace(run, status=RunStatus.RUNNING)
                observer.on_status(run)
            observer.on_event(run, event_record(item))


def ensure_successful(details: Sequence[RunDetailOut]) -> None:
    """Raise the error the local CLI raises for the same finished runs."""
    error = outcome_error(
        [(run_record(d), [host_record(d.id, h) for h in d.hosts]) for d in details]
    )
    if error is not None:
        raise error
