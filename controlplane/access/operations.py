"""Token operations the edges call: each one authorises its caller and is audited.

The CLI calls them as the local user, the API as the token holder; a caller whose role
may not manage tokens is refused, and the refusal is in the audit log too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from controlplane.access.policy import Action, Principal, authorize
from controlplane.access.store import TokenStore
from controlplane.access.tokens import TokenRecord, parse_lifetime, parse_reference, prefix_of
from controlplane.audit.chain import AuditAction
from controlplane.audit.store import AuditLog
from controlplane.errors import Refused


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``token`` is the only copy there will ever be."""

    record: TokenRecord
    token: str


def _authorize(
    principal: Principal, audit: AuditLog, action: AuditAction, target: str, reason: str
) -> None:
    try:
        authorize(principal, Action.TOKENS_ADMIN)
    except Refused as exc:
        audit.refused(principal, action, exc, target=target, reason=reason)
        raise


def issue_token(
    tokens: TokenStore,
    audit: AuditLog,
    principal: Principal,
    *,
    role: str,
    members: Iterable[str],
    expires: str,
    known_members: Collection[str],
    name: str | None = None,
    reason: str = "",
) -> IssuedToken:
    """Make a token for ``role`` (and ``members`` for an engineer) valid for ``expires``
    (``90d``, ``12h``, ``2w``)."""
    chosen = sorted(members)
    _authorize(principal, audit, AuditAction.TOKEN_CREATE, name or role, reason)
    lifetime = parse_lifetime(expires)
    record, secret = tokens.create(
        role=role,
        members=chosen,
        lifetime=lifetime,
        created_by=principal.name,
        known_members=known_members,
        name=name,
    )
    audit.record(
        principal,
        AuditAction.TOKEN_CREATE,
        target=record.prefix,
        reason=reason,
        detail={
            "name": record.name,
            "role": record.role.value,
            "members": sorted(record.members),
            "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        },
    )
    return IssuedToken(record, secret)


def revoke_token(
    tokens: TokenStore, audit: AuditLog, principal: Principal, reference: str, reason: str = ""
) -> tuple[TokenRecord, bool]:
    """Revoke a token by id, prefix or the token itself; returns the record and whether
    this call revoked it."""
    # Only the id goes into the log: ``reference`` may be the whole token.
    token_id = parse_reference(reference)
    _authorize(principal, audit, AuditAction.TOKEN_REVOKE, prefix_of(token_id), reason)
    record, changed = tokens.revoke(token_id)
    if changed:
        audit.record(
            principal,
            AuditAction.TOKEN_REVOKE,
            target=record.prefix,
            reason=reason,
            detail={"name": record.name, "role": record.role.value},
        )
    return record, changed


def list_tokens(tokens: TokenStore, principal: Principal) -> list[TokenRecord]:
    authorize(principal, Action.TOKENS_ADMIN)
    return tokens.list()
