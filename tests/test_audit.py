"""The audit log: a hash chain that shows edits, deletions and reordering.

The pure chain is tested directly; the store runs over SQLite and PostgreSQL, and the
tampering is done the way an intruder would, with SQL against the table.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from controlplane.access.policy import Principal, Role
from controlplane.audit.chain import (
    GENESIS,
    AuditAction,
    AuditEntry,
    Outcome,
    Problem,
    canonical_json,
    seal,
    verify,
)
from controlplane.audit.store import AuditLog
from controlplane.errors import Forbidden, InvalidInput, NotFound
from controlplane.store.schema import audit_log

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ADMIN = Principal.local("alice@cp1")


def chain(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS
    for i in range(n):
        entry = seal(
            prev,
            at=T0 + timedelta(minutes=i),
            actor="alice",
            role="admin",
            action=AuditAction.DEPLOY,
            outcome=Outcome.ACCEPTED,
            member="amsterdam",
            target=f"run-{i}",
        )
        entries.append(replace(entry, seq=i + 1))
        prev = entry.hash
    return entries


# -- the pure chain --------------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_and_ascii() -> None:
    assert canonical_json({"b": 1, "a": "Den Haag \u00e9"}) == '{"a":"Den Haag \\u00e9","b":1}'
    entry = chain(1)[0]
    assert entry.canonical().startswith('{"action":"deploy","actor":"alice","at":"2026-03-02T')
    assert '"at":"2026-03-02T09:00:00.000000+00:00"' in entry.canonical()


def test_a_sound_chain_verifies_with_its_head() -> None:
    entries = chain(4)
    result = verify(entries)
    assert result.ok and result.entries == 4 and result.head == entries[-1].hash
    assert verify([]).head == GENESIS
    assert verify(entries, expected_head=entries[1].hash).ok


def test_the_hash_covers_every_field() -> None:
    entry = chain(1)[0]
    changes: list[dict[str, Any]] = [
        {"reason": "x"},
        {"outcome": "ok"},
        {"at": T0 + timedelta(microseconds=1)},
        {"detail": {"version": "2"}},
        {"prev_hash": "1" * 64},
    ]
    for change in changes:
        tampered = replace(entry, **change)
        broken = verify([tampered]).broken
        assert broken is not None and broken.problem is Problem.EDITED


def test_edits_deletions_reordering_and_truncation_are_named() -> None:
    a, b, c, d = chain(4)
    edited = replace(b, member="utrecht")
    cases = [
        ([a, edited, c, d], None, "audit entry 2: edited (hash does not match its content)"),
        ([a, c, d], None, "audit entry 3: deleted (the entry before it is missing)"),
        ([b, c, d], None, "audit entry 2: deleted (the entries before it are missing)"),
        (
            [a, c, b, d],
            None,
            "audit entry 3: reordered (it follows entry 2, which is stored after it)",
        ),
        ([a, b, c], d.hash, "truncated"),
    ]
    for entries, head, message in cases:
        broken = verify(entries, expected_head=head).broken
        assert broken is not None
        assert message in str(broken)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("actor", "", "actor: must not be empty"),
        ("member", "x" * 64, "member: at most 63 characters"),
        ("reason", "a\x00b", "reason: must not contain NUL characters"),
        ("detail", {"when": datetime.now(UTC)}, "detail: not plain JSON"),
        ("at", datetime(2026, 1, 1), "at: must carry a time zone"),
    ],
)
def test_bad_entries_are_refused_naming_the_field(field: str, value: object, problem: str) -> None:
    fields: dict[str, object] = {
        "at": T0,
        "actor": "alice",
        "role": "admin",
        "action": AuditAction.CANCEL,
        "outcome": Outcome.OK,
    }
    fields[field] = value
    with pytest.raises(InvalidInput) as info:
        seal(GENESIS, **fields)  # type: ignore[arg-type]
    assert str(info.value).startswith(problem)


# -- the store, over both backends -----------------------------------------------------------


@pytest.fixture
def log(engine: Engine) -> AuditLog:
    times = iter(T0 + timedelta(seconds=i) for i in range(10_000))
    return AuditLog(engine, lambda: next(times))


def fill(log: AuditLog, n: int = 5) -> list[AuditEntry]:
    members = ["amsterdam", "rotterdam", None]
    return [
        log.record(
            ADMIN,
            AuditAction.DEPLOY,
            member=members[i % 3],
            target=f"run-{i}",
            reason=f"release {i}",
            outcome=Outcome.ACCEPTED,
            detail={"version": f"1.{i}.0", "hosts": ["app-1", "app-2"]},
        )
        for i in range(n)
    ]


def sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def test_a_real_log_verifies_and_reads_back_as_written(engine: Engine, log: AuditLog) -> None:
    written = fill(log)
    result = log.verify()
    assert result.ok and result.entries == 5 and result.head == written[-1].hash
    assert log.head() == written[-1].hash
    assert log.entries() == written  # read back byte for byte: the hashes still match
    assert written[0].prev_hash == GENESIS


def test_an_edited_row_is_found(engine: Engine, log: AuditLog) -> None:
    written = fill(log)
    sql(engine, "UPDATE audit_log SET reason = 'nothing to see' WHERE seq = :s", s=written[2].seq)
    broken = log.verify().broken
    assert broken is not None
    assert str(broken) == f"audit entry {written[2].seq}: edited (hash does not match its content)"


def test_an_edited_and_rehashed_row_still_breaks_the_next_link(
    engine: Engine, log: AuditLog
) -> None:
    written = fill(log)
    e = written[1]
    forged = seal(
        e.prev_hash,
        at=e.at,
        actor=e.actor,
        role=e.role,
        action=e.action,
        outcome=e.outcome,
        member=e.member,
        target=e.target,
        reason="forged",
        detail=e.detail,
    )
    sql(
        engine,
        "UPDATE audit_log SET reason = 'forged', hash = :h WHERE seq = :s",
        h=forged.hash,
        s=written[1].seq,
    )
    broken = log.verify().broken
    assert broken is not None and broken.seq == written[2].seq
    assert broken.problem is Problem.DELETED  # its predecessor is no longer there


def test_a_deleted_row_is_found(engine: Engine, log: AuditLog) -> None:
    written = fill(log)
    sql(engine, "DELETE FROM audit_log WHERE seq = :s", s=written[1].seq)
    broken = log.verify().broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (written[2].seq, Problem.DELETED)


def test_swapped_rows_are_found(engine: Engine, log: AuditLog) -> None:
    written = fill(log)
    first, second = written[1].seq, written[2].seq
    sql(engine, "UPDATE audit_log SET seq = -1 WHERE seq = :s", s=first)
    sql(engine, "UPDATE audit_log SET seq = :a WHERE seq = :b", a=first, b=second)
    sql(engine, "UPDATE audit_log SET seq = :b WHERE seq = -1", b=second)
    broken = log.verify().broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (first, Problem.REORDERED)


def test_removing_the_newest_rows_shows_against_a_noted_head(engine: Engine, log: AuditLog) -> None:
    written = fill(log)
    noted = log.verify().head
    sql(engine, "DELETE FROM audit_log WHERE seq = :s", s=written[-1].seq)
    assert log.verify().ok  # the rest is a sound, shorter chain
    broken = log.verify(expected_head=noted).broken
    assert broken is not None and broken.problem is Problem.TRUNCATED


def test_concurrent_appends_keep_one_chain(engine: Engine) -> None:
    log = AuditLog(engine)
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(8):
                log.record(ADMIN, AuditAction.CANCEL, target=f"w{n}-{i}")
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    result = log.verify()
    assert result.ok and result.entries == 48
    assert len({e.target for e in log.entries()}) == 48


def test_bad_input_writes_nothing(engine: Engine, log: AuditLog) -> None:
    with pytest.raises(InvalidInput, match="reason"):
        log.record(ADMIN, AuditAction.DEPLOY, reason="\x00")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar() == 0


def test_a_token_holder_is_recorded_by_name_role_and_token_id(log: AuditLog) -> None:
    holder = Principal("ci", Role.ENGINEER, frozenset({"utrecht"}), token_id="0123456789ab")
    entry = log.record(holder, AuditAction.ROLLBACK, member="utrecht", outcome=Outcome.REFUSED)
    assert (entry.actor, entry.role, entry.outcome) == ("ci", "engineer", "refused")
    assert entry.detail == {"token_id": "0123456789ab"}


def test_list_limits_filters_and_scopes(log: AuditLog) -> None:
    written = fill(log, 9)
    assert [e.target for e in log.list(limit=3)] == ["run-6", "run-7", "run-8"]
    assert {e.member for e in log.list(member="rotterdam")} == {"rotterdam"}
    assert len(log.list(since=written[4].at)) == 5
    engineer = Principal("eve", Role.ENGINEER, frozenset({"amsterdam"}))
    seen = log.list_for(engineer)
    assert [e.target for e in seen] == ["run-0", "run-3", "run-6"]
    with pytest.raises(NotFound):
        log.list_for(engineer, member="rotterdam")
    assert len(log.list_for(Principal("board", Role.BOARD))) == 9
    with pytest.raises(Forbidden):
        log.list_for(Principal("prom", Role.METRICS))
    with pytest.raises(InvalidInput, match=r"^limit: "):
        log.list(limit=0)


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_list_and_verify_then_catch_an_edit(
    engine: Engine, log: AuditLog, cli: Callable[..., tuple[int, str, str]]
) -> None:
    written = fill(log, 6)
    code, out, _ = cli("audit", "list", "--member", "amsterdam", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [e["target"] for e in listed] == ["run-0", "run-3"]
    assert listed[0]["actor"] == "alice@cp1" and listed[0]["hash"] == written[0].hash

    code, out, _ = cli("audit", "list", "--limit", "2")
    assert code == 0 and "run-5" in out and "run-3" not in out

    code, out, _ = cli("audit", "verify")
    assert code == 0
    assert "6 entries" in out and f"head {written[-1].hash}" in out

    code, out, _ = cli("audit", "verify", "--json")
    assert code == 0 and json.loads(out)["head"] == written[-1].hash

    sql(engine, "UPDATE audit_log SET outcome = 'ok' WHERE seq = :s", s=written[3].seq)
    code, out, err = cli("audit", "verify")
    assert code == 1
    assert err.strip() == f"audit entry {written[3].seq}: edited (hash does not match its content)"
    code, out, _ = cli("audit", "verify", "--json")
    assert code == 1
    assert json.loads(out)["broken"]["seq"] == written[3].seq


def test_cli_verify_with_a_noted_head_catches_truncation(
    engine: Engine, log: AuditLog, cli: Callable[..., tuple[int, str, str]]
) -> None:
    written = fill(log, 3)
    sql(engine, "DELETE FROM audit_log WHERE seq = :s", s=written[-1].seq)
    code, _, err = cli("audit", "verify", "--head", written[-1].hash)
    assert code == 1 and "truncated" in err


def test_cli_list_bad_input_is_exit_2(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = cli("audit", "list", "--limit", "0")
    assert code == 2 and err.strip() == "error: limit: must be between 1 and 10000"
    code, _, err = cli("audit", "list", "--since", "yesterday")
    assert code == 2 and "since: 'yesterday' is not an ISO 8601 time" in err
