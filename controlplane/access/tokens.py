"""API tokens, the pure part: their form, their hash, their lifetime and their grant.

A token reads ``cpt_<id>_<secret>``: ``cpt_`` says what it is (secret scanners and people
recognise it), ``<id>`` is 12 hex digits naming the token in lists and in the audit log,
and ``<secret>`` is 32 bytes from ``secrets`` in URL-safe base64 (256 bits). The store keeps
only the SHA-256 of the whole token and the visible prefix ``cpt_<id>``: the token itself
is shown once, when it is made. A plain SHA-256 suffices because the token is random and
long; a slow password hash only helps against guessable secrets.

Lifetimes are written ``90d``, ``12h`` or ``2w`` and bounded to two years: a token that
never expires outlives the person or scraper it was made for, so there is no "never".
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from controlplane.access.policy import Principal, Role
from controlplane.errors import InvalidInput

TOKEN_PREFIX = "cpt_"
ID_HEX_DIGITS = 12
SECRET_BYTES = 32
MAX_LIFETIME = timedelta(days=730)
MIN_LIFETIME = timedelta(hours=1)
DEFAULT_LIFETIME = "90d"
MAX_NAME_LENGTH = 100

# URL-safe base64 of 32 bytes without padding is exactly 43 characters.
_TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}([0-9a-f]{{{ID_HEX_DIGITS}}})_([A-Za-z0-9_-]{{43}})$")
_PREFIX_RE = re.compile(rf"^(?:{TOKEN_PREFIX})?([0-9a-f]{{{ID_HEX_DIGITS}}})$")
_LIFETIME_RE = re.compile(r"^([1-9][0-9]{0,5})([hdw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


class TokenStatus(Enum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class NewToken:
    """A freshly generated token: ``secret`` is the whole token, to be shown once."""

    id: str
    secret: str

    @property
    def prefix(self) -> str:
        return prefix_of(self.id)

    @property
    def sha256(self) -> str:
        return token_hash(self.secret)


@dataclass(frozen=True)
class TokenRecord:
    """What the store knows about a token: everything except the token itself."""

    id: str
    name: str
    role: Role
    members: frozenset[str]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", prefix_of(self.id))
        # The same rule as a principal's: a record that breaks it could never authenticate.
        self.principal()

    def status(self, now: datetime) -> TokenStatus:
        if self.revoked_at is not None:
            return TokenStatus.REVOKED
        if self.expires_at is not None and now >= self.expires_at:
            return TokenStatus.EXPIRED
        return TokenStatus.ACTIVE

    def principal(self) -> Principal:
        """The caller this token stands for."""
        return Principal(name=self.name, role=self.role, members=self.members, token_id=self.id)


def generate() -> NewToken:
    """A new random token id and token."""
    token_id = secrets.token_hex(ID_HEX_DIGITS // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return NewToken(id=token_id, secret=f"{TOKEN_PREFIX}{token_id}_{secret}")


def prefix_of(token_id: str) -> str:
    return f"{TOKEN_PREFIX}{token_id}"


def token_hash(secret: str) -> str:
    """The SHA-256 the store keeps instead of the token, as 64 hex digits."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_token(secret: str) -> str | None:
    """The token id when ``secret`` has the form of a token, else ``None``."""
    match = _TOKEN_RE.fullmatch(secret)
    return match.group(1) if match else None


def parse_reference(reference: str) -> str:
    """A token id from how people refer to a token: its id, its prefix or the whole token."""
    text = reference.strip()
    token_id = parse_token(text)
    if token_id is not None:
        return token_id
    match = _PREFIX_RE.fullmatch(text)
    if match is None:
        raise InvalidInput(
            f"token: expected a token id or prefix like {TOKEN_PREFIX}{'0' * ID_HEX_DIGITS}"
        )
    return match.group(1)


def parse_lifetime(text: str) -> timedelta:
    """``90d``, ``12h`` or ``2w`` as a duration between one hour and two years."""
    match = _LIFETIME_RE.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidInput(
            f"expires: {text!r} is not a duration like 90d, 12h or 2w "
            f"(at most {MAX_LIFETIME.days}d)"
        )
    lifetime = int(match.group(1)) * _UNITS[match.group(2)]
    if lifetime > MAX_LIFETIME:
        raise InvalidInput(f"expires: {text} is longer than the limit of {MAX_LIFETIME.days}d")
    if lifetime < MIN_LIFETIME:
        raise InvalidInput("expires: must be at least 1h")
    return lifetime


def parse_role(value: str | Role) -> Role:
    if isinstance(value, Role):
        return value
    try:
        return Role(value.strip().lower())
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise InvalidInput(f"role: {value!r} is not one of {choices}") from None


def check_name(name: str) -> str:
    """A token's name: what the audit log shows as the actor, so it must be printable."""
    text = name.strip()
    if not text:
        raise InvalidInput("name: must not be empty")
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidInput(f"name: at most {MAX_NAME_LENGTH} characters")
    if not text.isprintable():
        raise InvalidInput("name: must not contain control characters")
    return text


def check_grant(
    role: str | Role, members: Iterable[str], known_members: Collection[str]
) -> tuple[Role, frozenset[str]]:
    """The role and members a token may be made with: an engineer token names at least
    one member of the fleet, every other role names none."""
    parsed = parse_role(role)
    chosen = frozenset(m.strip() for m in members)
    if parsed is Role.ENGINEER and not chosen:
        raise InvalidInput("members: an engineer token needs at least one member")
    if parsed is not Role.ENGINEER and chosen:
        raise InvalidInput(f"members: a {parsed.value} token is not limited to members")
    unknown = sorted(chosen - set(known_members))
    if unknown:
        raise InvalidInput(f"members: unknown member {unknown[0]!r}")
    return parsed, chosen
