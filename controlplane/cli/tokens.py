"""``controlplane tokens ...``: create, list and revoke API tokens (audited).

The CLI acts as the local user, who is an admin; the token operations authorise and audit
the same way for the HTTP API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from controlplane.access.operations import issue_token, list_tokens, revoke_token
from controlplane.access.policy import Principal
from controlplane.access.store import TokenStore
from controlplane.access.tokens import DEFAULT_LIFETIME, TokenRecord
from controlplane.app import Context
from controlplane.audit.store import AuditLog
from controlplane.cli.common import FleetOpt, JsonOpt, context, err, me, out, print_json
from controlplane.cli.remote import local_only
from controlplane.clock import utc_now

tokens_app = typer.Typer(
    help="API tokens: create (shown once), list and revoke.", no_args_is_help=True
)

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: recorded in the audit log.")]


def _stores(ctx: Context) -> tuple[TokenStore, AuditLog, Principal]:
    return ctx.tokens, ctx.audit, me()


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def token_json(record: TokenRecord, now: datetime) -> dict[str, Any]:
    return {
        "id": record.id,
        "prefix": record.prefix,
        "name": record.name,
        "role": record.role.value,
        "members": sorted(record.members),
        "status": record.status(now).value,
        "created_by": record.created_by,
        "created_at": _time(record.created_at),
        "expires_at": _time(record.expires_at),
        "revoked_at": _time(record.revoked_at),
        "last_used_at": _time(record.last_used_at),
    }


@tokens_app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", help="admin, engineer, board or metrics.")],
    member: Annotated[
        list[str] | None,
        typer.Option("--member", help="A member an engineer token acts for (repeatable)."),
    ] = None,
    expires: Annotated[
        str, typer.Option("--expires", help="Lifetime like 90d, 12h or 2w (at most 730d).")
    ] = DEFAULT_LIFETIME,
    name: Annotated[
        str | None, typer.Option("--name", help="Who or what holds it; shown in the audit log.")
    ] = None,
    reason: ReasonOpt = "",
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token and print it once: only its hash is kept."""
    local_only("tokens create")
    with context(fleet) as ctx:
        tokens, audit, principal = _stores(ctx)
        issued = issue_token(
            tokens,
            audit,
            principal,
            role=role,
            members=member or [],
            expires=expires,
            known_members=[m.slug for m in ctx.fleet.members],
            name=name,
            reason=reason,
        )
    record = issued.record
    if as_json:
        print_json({"token": issued.token, **token_json(record, utc_now())})
    else:
        scope = f" for {', '.join(sorted(record.members))}" if record.members else ""
        out.print(
            f"created {record.role.value} token {record.name!r} ({record.prefix}){scope}, "
            f"expires {record.expires_at:%Y-%m-%d %H:%M} UTC",
            highlight=False,
            soft_wrap=True,
        )
        out.print(issued.token, markup=False, highlight=False, soft_wrap=True)
    err.print("Store this token now: it is not shown again.", highlight=False)


@tokens_app.command("list")
def list_(fleet: FleetOpt = None, as_json: JsonOpt = False) -> None:
    """Every token with its role, members, status and last use (never the token)."""
    local_only("tokens list")
    with context(fleet) as ctx:
        tokens, _, principal = _stores(ctx)
        records = list_tokens(tokens, principal)
    now = utc_now()
    if as_json:
        print_json([token_json(r, now) for r in records])
        return
    table = Table(title="API tokens")
    table.add_column("prefix", no_wrap=True)
    for col in ("name", "role", "members", "status", "expires (UTC)", "last used"):
        table.add_column(col)
    for r in records:
        table.add_row(
            r.prefix,
            r.name,
            r.role.value,
            ", ".join(sorted(r.members)) or "-",
            r.status(now).value,
            f"{r.expires_at:%Y-%m-%d %H:%M}" if r.expires_at else "-",
            f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "never",
        )
    out.print(table)


@tokens_app.command("revoke")
def revoke(
    token: Annotated[str, typer.Argument(help="The token's id or prefix (cpt_…).")],
    reason: ReasonOpt = "",
    fleet: FleetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    local_only("tokens revoke")
    with context(fleet) as ctx:
        tokens, audit, principal = _stores(ctx)
        record, changed = revoke_token(tokens, audit, principal, token, reason=reason)
    if as_json:
        print_json({**token_json(record, utc_now()), "changed": changed})
    elif changed:
        out.print(f"revoked {record.prefix} ({record.name})", highlight=False)
    else:
        out.print(f"{record.prefix} ({record.name}) was already revoked", highlight=False)
