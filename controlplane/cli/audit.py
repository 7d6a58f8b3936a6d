"""``controlplane audit ...``: list the audit log and verify its hash chain.

``verify`` exits 0 and prints the head hash when the chain holds, and exits 1 naming the
first broken entry when a row was edited, deleted or reordered. Noting the head hash
somewhere else (a ticket, a chat message) and passing it back with ``--head`` later also
catches entries removed from the end.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from controlplane.audit.chain import AuditEntry, Verification
from controlplane.audit.store import MAX_LIMIT
from controlplane.cli.common import FleetOpt, JsonOpt, context, err, me, out, print_json
from controlplane.cli.remote import local_only
from controlplane.clock import as_utc
from controlplane.errors import InvalidInput

EXIT_FAILED = 1

audit_app = typer.Typer(
    help="The audit log: who changed what, when and why; verify its hash chain.",
    no_args_is_help=True,
)


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "member": entry.member,
        "target": entry.target,
        "reason": entry.reason,
        "outcome": entry.outcome,
        "detail": dict(entry.detail),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def verification_json(result: Verification) -> dict[str, Any]:
    broken = result.broken
    return {
        "status": "ok" if broken is None else "broken",
        "entries": result.entries,
        "head": result.head if broken is None else None,
        "broken": None
        if broken is None
        else {
            "seq": broken.seq,
            "problem": broken.problem.value,
            "explanation": broken.explanation,
            "message": str(broken),
        },
    }


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"since: {text!r} is not an ISO 8601 time") from None
    # Stored times are UTC, so a time without an offset is read as UTC.
    return as_utc(parsed)


@audit_app.command("list")
def list_(
    member: Annotated[str | None, typer.Option("--member", help="Only this member.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", help=f"The newest N entries (1-{MAX_LIMIT}).")
    ] = 100,
    since: Annotated[
        str | None, typer.Option("--since", help="Only entries from this time (ISO 8601, UTC).")
    ] = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The newest audit entries, oldest first."""
    local_only("audit list")
    start = _since(since)
    with context(fleet) as ctx:
        entries = ctx.audit.list_for(me(), member=member, since=start, limit=limit)
    if as_json:
        print_json([entry_json(e) for e in entries])
        return
    table = Table(title="Audit log")
    for col in ("#", "at (UTC)", "actor", "action", "member", "target", "outcome", "reason"):
        table.add_column(col, no_wrap=col in ("#", "action"))
    for e in entries:
        table.add_row(
            str(e.seq),
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            f"{e.actor} ({e.role})",
            e.action,
            e.member or "-",
            e.target or "-",
            e.outcome,
            e.reason,
        )
    out.print(table)


@audit_app.command("verify")
def verify(
    head: Annotated[
        str | None,
        typer.Option("--head", help="A head hash printed earlier: it must still be there."),
    ] = None,
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the hash chain; exit 1 naming the first entry that was edited, deleted or
    moved, else print the head hash."""
    local_only("audit verify")
    with context(fleet) as ctx:
        result = ctx.audit.verify(expected_head=head)
    if as_json:
        print_json(verification_json(result))
    elif result.broken is None:
        count = f"{result.entries} {'entry' if result.entries == 1 else 'entries'}"
        out.print(f"audit log intact: {count}", highlight=False)
        out.print(f"head {result.head}", highlight=False)
    else:
        err.print(str(result.broken), markup=False, highlight=False, soft_wrap=True)
    if result.broken is not None:
        raise typer.Exit(EXIT_FAILED)
