"""API tokens: shown once, stored hashed, recognisable, expiring, revocable, scoped.

The store tests run over SQLite and PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from controlplane.access.operations import issue_token, list_tokens, revoke_token
from controlplane.access.policy import Action, Principal, Role, authorize
from controlplane.access.store import REJECTED, TokenStore
from controlplane.access.tokens import (
    check_grant,
    generate,
    parse_lifetime,
    parse_reference,
    parse_token,
    token_hash,
)
from controlplane.audit.store import AuditLog
from controlplane.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from controlplane.store.schema import api_tokens, audit_log, metadata

MEMBERS = ["amsterdam", "rotterdam", "den-haag", "utrecht"]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(engine: Engine, clock: Clock) -> TokenStore:
    return TokenStore(engine, clock)


def make(store: TokenStore, role: str = "admin", *members: str, days: int = 90) -> str:
    _, secret = store.create(
        role=role,
        members=members,
        lifetime=timedelta(days=days),
        created_by="alice@cp1",
        known_members=MEMBERS,
    )
    return secret


def dump(engine: Engine) -> str:
    """Every row of every table as text: where a leaked secret would show up."""
    rows = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows += [str(tuple(r)) for r in conn.execute(select(table))]
    return "\n".join(rows)


# -- the pure core ---------------------------------------------------------------------------


def test_a_token_is_prefixed_random_and_parses_back() -> None:
    new = generate()
    assert new.secret.startswith(f"cpt_{new.id}_")
    assert new.prefix == f"cpt_{new.id}"
    assert parse_token(new.secret) == new.id
    assert len(new.secret.split("_", 2)[2]) == 43  # 32 random bytes, base64url
    assert generate().secret != new.secret
    assert len(token_hash(new.secret)) == 64


@pytest.mark.parametrize(
    "bad",
    ["", "cpt_", "Bearer cpt_x", "cpt_0123456789ab_short", "xyz_0123456789ab_" + "a" * 43],
)
def test_malformed_tokens_do_not_parse(bad: str) -> None:
    assert parse_token(bad) is None


def test_a_token_is_referred_to_by_id_prefix_or_whole() -> None:
    new = generate()
    assert parse_reference(new.id) == parse_reference(new.prefix) == new.id
    assert parse_reference(new.secret) == new.id
    with pytest.raises(InvalidInput, match=r"^token: "):
        parse_reference("nonsense")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2))],
)
def test_lifetimes(text: str, expected: timedelta) -> None:
    assert parse_lifetime(text) == expected


@pytest.mark.parametrize("text", ["never", "0d", "731d", "105w", "30m", "-1d", "90", ""])
def test_lifetimes_are_bounded_and_named(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^expires: "):
        parse_lifetime(text)


def test_grants() -> None:
    assert check_grant("engineer", ["amsterdam"], MEMBERS) == (
        Role.ENGINEER,
        frozenset({"amsterdam"}),
    )
    assert check_grant("board", [], MEMBERS) == (Role.BOARD, frozenset())
    for role, members, problem in [
        ("engineer", [], "members: an engineer token needs at least one member"),
        ("board", ["amsterdam"], "members: a board token is not limited to members"),
        ("engineer", ["atlantis"], "members: unknown member 'atlantis'"),
        ("root", [], "role: 'root' is not one of admin, engineer, board, metrics"),
    ]:
        with pytest.raises(InvalidInput) as info:
            check_grant(role, members, MEMBERS)
        assert str(info.value) == problem


# -- the store, over both backends -----------------------------------------------------------


def test_the_token_is_shown_once_and_stored_only_as_a_hash(
    engine: Engine, tokens: TokenStore
) -> None:
    record, secret = tokens.create(
        role="engineer",
        members=["amsterdam"],
        lifetime=timedelta(days=90),
        created_by="alice@cp1",
        known_members=MEMBERS,
        name="ci-amsterdam",
    )
    assert secret.startswith(record.prefix + "_")
    everything = dump(engine)
    assert secret not in everything
    assert secret.split("_", 2)[2] not in everything  # not even the random part
    with engine.connect() as conn:
        stored = conn.execute(select(api_tokens.c.secret_sha256, api_tokens.c.prefix)).one()
    assert stored == (token_hash(secret), record.prefix)
    listed = tokens.list()
    assert [(r.id, r.name, r.role, r.members) for r in listed] == [
        (record.id, "ci-amsterdam", Role.ENGINEER, frozenset({"amsterdam"}))
    ]
    assert listed[0].expires_at == T0 + timedelta(days=90)


def test_authenticate_gives_the_tokens_principal(tokens: TokenStore) -> None:
    secret = make(tokens, "engineer", "amsterdam", "utrecht")
    principal = tokens.authenticate(secret)
    assert principal.role is Role.ENGINEER
    assert principal.members == {"amsterdam", "utrecht"}
    assert principal.token_id == parse_token(secret)
    assert principal.name == f"engineer-{principal.token_id}"


def test_unknown_malformed_expired_and_revoked_get_the_same_answer(
    tokens: TokenStore, clock: Clock
) -> None:
    good = make(tokens, "board", days=1)
    revoked = make(tokens, "metrics")
    tokens.revoke(parse_token(revoked) or "")
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    candidates = ["", "garbage", generate().secret, flipped, revoked]
    for candidate in candidates:
        with pytest.raises(Unauthenticated) as info:
            tokens.authenticate(candidate)
        assert str(info.value) == REJECTED
    assert tokens.authenticate(good).role is Role.BOARD
    clock.advance(days=1)  # expiry is exclusive: at expires_at the token is dead
    with pytest.raises(Unauthenticated, match=REJECTED):
        tokens.authenticate(good)


def test_last_used_is_written_at_most_once_a_minute(tokens: TokenStore, clock: Clock) -> None:
    secret = make(tokens)
    assert tokens.list()[0].last_used_at is None
    tokens.authenticate(secret)
    assert tokens.list()[0].last_used_at == T0
    clock.advance(seconds=59)
    tokens.authenticate(secret)
    assert tokens.list()[0].last_used_at == T0
    clock.advance(seconds=1)
    tokens.authenticate(secret)
    assert tokens.list()[0].last_used_at == T0 + timedelta(minutes=1)


def test_revoke_by_prefix_then_again(tokens: TokenStore, clock: Clock) -> None:
    secret = make(tokens)
    record = tokens.list()[0]
    clock.advance(hours=1)
    revoked, changed = tokens.revoke(record.prefix)
    assert changed and revoked.revoked_at == T0 + timedelta(hours=1)
    again, changed = tokens.revoke(record.id)
    assert not changed and again.revoked_at == revoked.revoked_at
    with pytest.raises(Unauthenticated):
        tokens.authenticate(secret)
    stranger = generate()
    with pytest.raises(NotFound) as info:
        tokens.revoke(stranger.secret)
    assert str(info.value) == f"token: no token {stranger.prefix}"  # never the token itself


def test_bad_grants_write_nothing(engine: Engine, tokens: TokenStore) -> None:
    for role, members in [("engineer", []), ("board", ["amsterdam"]), ("engineer", ["x"])]:
        with pytest.raises(InvalidInput):
            make(tokens, role, *members)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(api_tokens)).scalar() == 0


def test_an_engineer_token_sees_only_its_members(tokens: TokenStore) -> None:
    principal = tokens.authenticate(make(tokens, "engineer", "rotterdam"))
    authorize(principal, Action.RUNS_WRITE, "rotterdam")
    with pytest.raises(NotFound):  # another member's object does not exist for it
        authorize(principal, Action.RUNS_READ, "amsterdam")
    with pytest.raises(Forbidden):
        authorize(principal, Action.COSTS_READ)


# -- the audited operations ------------------------------------------------------------------


def test_issuing_and_revoking_are_audited_without_the_token(
    engine: Engine, tokens: TokenStore, clock: Clock
) -> None:
    audit = AuditLog(engine, clock)
    admin = Principal.local("alice@cp1")
    issued = issue_token(
        tokens,
        audit,
        admin,
        role="engineer",
        members=["utrecht"],
        expires="30d",
        known_members=MEMBERS,
        name="bob",
        reason="on-call rota",
    )
    assert issued.record.expires_at == T0 + timedelta(days=30)
    revoke_token(tokens, audit, admin, issued.token, reason="left the team")
    entries = audit.list()
    assert [(e.action, e.outcome, e.actor, e.target) for e in entries] == [
        ("token_create", "ok", "alice@cp1", issued.record.prefix),
        ("token_revoke", "ok", "alice@cp1", issued.record.prefix),
    ]
    assert entries[0].detail["members"] == ["utrecht"]
    assert entries[0].reason == "on-call rota"
    assert issued.token not in dump(engine)


def test_a_role_without_token_rights_is_refused_and_the_refusal_audited(
    engine: Engine, tokens: TokenStore, clock: Clock
) -> None:
    audit = AuditLog(engine, clock)
    board = tokens.authenticate(make(tokens, "board"))
    with pytest.raises(Forbidden):
        issue_token(
            tokens, audit, board, role="admin", members=[], expires="1d", known_members=MEMBERS
        )
    with pytest.raises(Forbidden):
        list_tokens(tokens, board)
    (entry,) = audit.list()
    assert (entry.action, entry.outcome, entry.role) == ("token_create", "refused", "board")
    refused = "role board may not tokens.admin"
    assert entry.detail == {"token_id": board.token_id, "refused": refused}
    assert len(tokens.list()) == 1  # nothing was created


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_create_shows_the_token_once_then_list_and_revoke(
    engine: Engine, cli: Callable[..., tuple[int, str, str]]
) -> None:
    code, out, err = cli(
        "tokens", "create", "--role", "engineer", "--member", "amsterdam", "--member",
        "utrecht", "--name", "bob", "--expires", "30d", "--json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    token = created["token"]
    assert token.startswith(created["prefix"] + "_") and created["prefix"].startswith("cpt_")
    assert created["members"] == ["amsterdam", "utrecht"] and created["status"] == "active"
    assert "not shown again" in err
    assert TokenStore(engine).authenticate(token).name == "bob"

    code, out, _ = cli("tokens", "list", "--json")
    assert code == 0 and token not in out
    assert [t["name"] for t in json.loads(out)] == ["bob"]

    code, out, _ = cli("tokens", "revoke", created["prefix"], "--reason", "left")
    assert code == 0 and "revoked" in out
    with pytest.raises(Unauthenticated):
        TokenStore(engine).authenticate(token)
    code, out, _ = cli("tokens", "list", "--json")
    assert json.loads(out)[0]["status"] == "revoked"

    actions = [(e.action, e.actor, e.outcome) for e in AuditLog(engine).list()]
    assert actions == [
        ("token_create", "alice@cp1", "ok"),
        ("token_revoke", "alice@cp1", "ok"),
    ]
    assert token not in dump(engine)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "root"], "role: 'root' is not one of"),
        (["--role", "engineer"], "members: an engineer token needs at least one member"),
        (["--role", "engineer", "--member", "atlantis"], "members: unknown member 'atlantis'"),
        (["--role", "board", "--expires", "never"], "expires: 'never' is not a duration"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(
    engine: Engine, cli: Callable[..., tuple[int, str, str]], args: list[str], message: str
) -> None:
    code, out, err = cli("tokens", "create", *args)
    assert code == 2
    assert out == "" and len(err.strip().splitlines()) == 1 and message in err
    with engine.connect() as conn:
        for table in (api_tokens, audit_log):
            assert conn.execute(select(func.count()).select_from(table)).scalar() == 0


def test_cli_revoking_an_unknown_token_is_exit_2(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = cli("tokens", "revoke", "cpt_0123456789ab")
    assert code == 2 and "no token" in err
