"""``controlplane notifications list``: the webhook deliveries and how they went.

Local only, like the other commands that read the store directly: it shows targets by name
and payloads, never a URL or a secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from controlplane.cli.common import FleetOpt, JsonOpt, context, me, out, print_json
from controlplane.cli.remote import local_only
from controlplane.notify.operations import STATUSES, list_deliveries
from controlplane.notify.store import MAX_LIMIT

notifications_app = typer.Typer(
    help="Webhook notifications: what was sent to which target, and how it went.",
    no_args_is_help=True,
)


def _short(at: datetime | None) -> str:
    return "-" if at is None else f"{at:%Y-%m-%d %H:%M:%S}"


@notifications_app.command("list")
def list_(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help=f"Only these statuses ({STATUSES}; repeatable)."),
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="Only this target.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", help=f"The newest N deliveries (1-{MAX_LIMIT}).")
    ] = 50,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The newest deliveries, newest first: event, target, status, attempts, last result."""
    local_only("notifications list")
    with context(fleet) as ctx:
        found = list_deliveries(ctx, me(), statuses=status, target=target, limit=limit)
    if as_json:
        print_json(found)
        return
    table = Table(title="Notifications")
    for col in ("created (UTC)", "id", "event", "target", "member", "status", "tries", "last"):
        table.add_column(col, no_wrap=col in ("id", "event", "status"))
    for d in found:
        if d.last_error is not None:
            last = d.last_error
        elif d.last_http_status is not None:
            last = f"HTTP {d.last_http_status}"
        else:
            last = "-"
        if d.status == "pending" and d.next_attempt_at is not None:
            last += f"; next {d.next_attempt_at:%H:%M:%S}"
        table.add_row(
            _short(d.created_at),
            # The id's start, as runs list shows them; --json has the whole webhook-id.
            d.id[:12],
            d.event_type,
            d.target,
            d.member or "-",
            d.status,
            str(d.attempts),
            last,
        )
    out.print(table)
