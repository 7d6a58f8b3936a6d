"""The remote CLI: the same commands against a control plane over HTTP, with the same
output and exit codes as run locally.

These tests send the CLI's requests to the real API in-process (a ``TestClient`` over
``controlplane.api``) on the same data dir a local command reads, so local and remote
output can be compared byte for byte. ``test_remote_cli_e2e.py`` deploys a lab app through
a real ``controlplane serve``.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from controlplane.cli import app, run
from controlplane.cli.remote import ensure_successful, follow
from controlplane.client import ControlPlaneClient
from controlplane.deploy.model import (
    HostOutcome,
    HostResult,
    Run,
    RunEvent,
    RunKind,
    RunSpec,
    RunStatus,
)
from controlplane.errors import (
    Unreachable,
)
from tests.api_fixtures import OTHER, OWN, Api, build_api
from tests.conftest import LAB

# Served in-process by the TestClient; a loopback name, so no clear-text token warning.
SERVER = "http://localhost"
CLI = str(Path(sys.executable).parent / "controlplane")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    built = build_api(tmp_path_factory.mktemp("remote"))
    yield built
    built.client.close()
    built.ctx.close()


@pytest.fixture
def env(api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    """Local commands read the API's own data dir and fleet; remote ones send admin's token."""
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(api.ctx.data_dir))
    monkeypatch.setenv("CONTROLPLANE_FLEET", str(LAB))
    monkeypatch.setenv("CONTROLPLANE_TOKEN", api.tokens["admin"])
    monkeypatch.delenv("CONTROLPLANE_SERVER", raising=False)
    return api


@dataclass
class Seeded:
    good: Run
    unreachable: Run
    other: Run


def _finished(
    api: Api, member: str, app: str, status: RunStatus, outcome: HostOutcome, error: str | None
) -> Run:
    runs = api.ctx.runs
    run = runs.create(
        RunSpec(
            kind=RunKind.DEPLOY,
            playbook="deploy.yml",
            started_by="ops@example",
            reason="monthly release",
            member=member,
            app=app,
            version="1.1.0",
            hosts=("lab-1",),
        )
    )
    runs.start(run.id, node="test")
    at = run.created_at
    runs.append_events(
        run.id,
        [
            RunEvent(run.id, 1, "runner_on_start", at, "lab-1", "release: unpack"),
            RunEvent(run.id, 2, "runner_on_ok", at, "lab-1", "release: unpack", {"changed": True}),
            RunEvent(run.id, 3, "playbook_on_stats", at),
        ],
    )
    runs.record_host(HostResult(run.id, "lab-1", outcome, ok=3, changed=1, release_before="1.0.0"))
    return runs.transition(
        run.id, status, rc=0 if status is RunStatus.SUCCESSFUL else 4, error=error
    )


def _seed_runs(api: Api) -> Seeded:
    return Seeded(
        good=_finished(api, OWN, "uitkering", RunStatus.SUCCESSFUL, HostOutcome.CHANGED, None),
        unreachable=_finished(
            api, OWN, "reintegratie", RunStatus.FAILED, HostOutcome.UNREACHABLE, "lab-1 down"
        ),
        other=_finished(api, OTHER, "uitkering", RunStatus.SUCCESSFUL, HostOutcome.OK, None),
    )


@pytest.fixture(scope="module")
def seeded(api: Api) -> Seeded:
    return _seed_runs(api)


def both(api: Api, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    """The same command run locally and against the server: (local, remote) stdout."""
    assert run(list(args)) == 0
    local = capsys.readouterr().out
    assert run(["--server", SERVER, *args], http=api.client) == 0
    remote = capsys.readouterr().out
    return local, remote


@pytest.mark.parametrize(
    "args",
    [
        ("fleet", "show", "--json"),
        ("fleet", "show"),
        ("runs", "list", "--json"),
        ("runs", "list", "--member", OWN, "--status", "failed", "--json"),
        ("runs", "list"),
        (
            "windows",
            "list",
            "--member",
            OWN,
            "--from",
            "2026-10-01",
            "--to",
            "2026-11-01",
            "--json",
        ),
        ("windows", "conflicts", "--from", "2026-10-01", "--to", "2027-01-01", "--json"),
        ("windows", "ics", OWN),
        ("uptime", "--json"),
        ("costs", "allocate", "--period", "2026-10", "--json"),
        ("costs", "allocate", "--period", "2026-10"),
        ("schedule", "list", "--json"),
    ],
    ids=" ".join,
)
def test_remote_output_equals_local_output(
    env: Api, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    local, remote = both(env, capsys, *args)
    assert local.strip(), "the command printed nothing"
    assert _unstamped(remote) == _unstamped(local)


def _unstamped(text: str) -> str:
    """Without the calendar's DTSTAMP lines: they say when the feed was made."""
    return "".join(line for line in text.splitlines(True) if not line.startswith("DTSTAMP:"))


def test_runs_show_and_its_followed_events_equal_local(
    env: Api, seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = seeded.good.id
    args = ["runs", "show", run_id[:8], "--follow", "--json"]
    assert run(args) == 0
    local = capsys.readouterr()
    assert run(["--server", SERVER, *args], http=env.client) == 0
    remote = capsys.readouterr()
    assert json.loads(remote.out)[0]["id"] == run_id
    assert remote.out == local.out
    assert "lab-1        changed      release: unpack" in remote.err
    assert remote.err == local.err


def test_refused_gate_check_exits_3_after_printing_the_decision(
    env: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    # The last working day of October 2026 is inside Amsterdam's payment-run freeze.
    for args in (
        ["windows", "check", OWN, "--at", "2026-10-30T12:00", "--json"],
        ["windows", "check-host", "lab-1", "--at", "2026-10-30T12:00"],
    ):
        assert run(args) == 3
        local = capsys.readouterr().out
        assert run(["--server", SERVER, *args], http=env.client) == 3
        assert capsys.readouterr().out == local
        assert "freeze" in local


def test_costs_report_is_downloaded_to_the_file(
    env: Api, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    local, remote = tmp_path / "local.csv", tmp_path / "remote.csv"
    assert run(["costs", "report", "--period", "2026-10", "-o", str(local)]) == 0
    capsys.readouterr()
    code = run(
        ["--server", SERVER, "costs", "report", "--period", "2026-10", "-o", str(remote)],
        http=env.client,
    )
    assert code == 0
    assert f"wrote {remote}" in capsys.readouterr().out
    assert remote.read_bytes() == local.read_bytes()
    assert b"2026-10" in remote.read_bytes()


def test_cancel_of_a_finished_run_answers_like_local(
    env: Api, seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    local, remote = both(env, capsys, "runs", "cancel", seeded.good.id, "--json")
    assert remote == local
    assert json.loads(remote)["status"] == "successful"


def remote_code(api: Api, token: str | None, *args: str, mp: pytest.MonkeyPatch) -> int:
    if token is None:
        mp.delenv("CONTROLPLANE_TOKEN", raising=False)
    else:
        mp.setenv("CONTROLPLANE_TOKEN", token)
    return run(["--server", SERVER, *args], http=api.client)


def test_server_errors_map_to_the_local_exit_codes(
    env: Api, seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other_run = seeded.other.id
    engineer, board = env.tokens["engineer"], env.tokens["board"]
    cases: list[tuple[str | None, list[str], int, str]] = [
        (None, ["fleet", "show"], 3, "refused the token"),
        ("cpt_not-a-real-token", ["runs", "list"], 3, "refused the token"),
        (engineer, ["runs", "show", other_run], 2, "no run"),
        (engineer, ["deploy", OTHER, "--app", "uitkering"], 2, "member: unknown member"),
        (board, ["deploy", OWN, "--app", "uitkering"], 3, ""),
        (env.tokens["admin"], ["deploy", OWN, "--app", "uitkering", "--version", "9.9.9"], 2, ""),
        (env.tokens["admin"], ["deploy", OWN, "--serial", "0"], 2, "serial"),
        (env.tokens["admin"], ["runs", "show", "ffffffffffff"], 2, "no run"),
        (env.tokens["admin"], ["costs", "allocate", "--period", "2027-01"], 2, "no cost data"),
    ]
    for token, args, code, words in cases:
        assert remote_code(env, token, *args, mp=monkeypatch) == code, args
        error = capsys.readouterr().err
        assert error.startswith("error: ") and words in error, (args, error)
        assert len(error.strip().splitlines()) == 1, error
        for secret in env.tokens.values():
            assert secret not in error


def test_a_server_that_is_down_exits_4_naming_it(
    env: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        assert run(["--server", f"http://user:pw@127.0.0.1:{port}/", "runs", "list"]) == 4
    error = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}" in error and "could not be reached" in error
    assert "pw" not in error and env.tokens["admin"] not in error


@dataclass
class Recorder:
    """An observer that writes down what it was told, as the live progress table is."""

    statuses: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def on_status(self, run: Run) -> None:
        self.statuses.append(run.status.value)

    def on_event(self, run: Run, event: RunEvent) -> None:
        self.events.append(f"{run.status.value} {event.seq} {event.event}")


def test_following_a_run_feeds_the_observer_and_judges_it_like_local(
    env: Api, seeded: Seeded
) -> None:
    runs = seeded
    with ControlPlaneClient(SERVER, env.tokens["admin"], http=env.client) as client:
        recorder = Recorder()
        follow(client, [client.run(runs.good.id), client.run(runs.unreachable.id)], recorder)
        assert recorder.statuses == ["successful", "successful", "failed", "failed"]
        assert recorder.events[:3] == [
            "successful 1 runner_on_start",
            "successful 2 runner_on_ok",
            "successful 3 playbook_on_stats",
        ]
        ensure_successful([client.run(runs.good.id)])
        # Failed only on an unreachable host: unreachable (exit 4), as a local deploy says.
        with pytest.raises(Unreachable, match="lab-1 down"):
            ensure_successful([client.run(runs.good.id), client.run(runs.unreachable.id)])


LOCAL_ONLY: list[list[str]] = [
    ["validate"],
    ["inventory"],
    ["db", "upgrade"],
    ["db", "status"],
    ["provision"],
    ["serve"],
    ["tokens", "create", "--role", "admin"],
    ["tokens", "list"],
    ["tokens", "revoke", "cpt_x"],
    ["audit", "list"],
    ["audit", "verify"],
    ["schedule", "sync"],
    ["runs", "execute", "abc"],
    ["deploy", OWN, "--when", "next-window"],
    ["uptime", "--probe"],
    ["config"],
    ["notifications", "list"],
]
REMOTE: list[list[str]] = [
    ["fleet", "show"],
    ["deploy", OWN],
    ["rollback", OWN, "--app", "uitkering"],
    ["runs", "list"],
    ["runs", "show", "abc"],
    ["runs", "cancel", "abc"],
    ["windows", "list"],
    ["windows", "check", OWN],
    ["windows", "check-host", "lab-1"],
    ["windows", "conflicts"],
    ["windows", "ics", OWN],
    ["schedule", "list"],
    ["uptime"],
    ["costs", "allocate", "--period", "2026-10"],
    ["costs", "report", "--period", "2026-10", "-o", "report.csv"],
]


def _command_paths() -> set[str]:
    paths = {info.name or info.callback.__name__ for info in app.registered_commands}  # type: ignore[union-attr]
    for group in app.registered_groups:
        assert group.typer_instance is not None
        for info in group.typer_instance.registered_commands:
            paths.add(f"{group.name} {info.name}")
    return paths


def test_every_command_either_works_remotely_or_refuses_a_server(
    env: Api, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    covered = {
        " ".join(a[:2]) if a[0] in {g.name for g in app.registered_groups} else a[0]
        for a in LOCAL_ONLY + REMOTE
    }
    assert _command_paths() - covered == {"version"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
        for args in LOCAL_ONLY:
            assert run(["--server", down, *args]) == 2, args
            error = capsys.readouterr().err
            assert "local-only" in error and len(error.strip().splitlines()) == 1, (args, error)
        for args in REMOTE:
            assert run(["--server", down, *args]) == 4, args
            assert "could not be reached" in capsys.readouterr().err, args
        # The environment chooses a server just as the flag does.
        monkeypatch.setenv("CONTROLPLANE_SERVER", down)
        assert run(["validate"]) == 2
        assert "without CONTROLPLANE_SERVER" in capsys.readouterr().err
        assert run(["runs", "list"]) == 4
        assert run(["runs", "list", "--fleet", str(LAB)]) == 2
        assert "--fleet" in capsys.readouterr().err
    assert not (tmp_path / "report.csv").exists()


def test_config_shows_the_server_and_masks_the_token(
    env: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTROLPLANE_SERVER", "https://cp.example:9480")
    assert run(["config", "--json"]) == 0
    shown = capsys.readouterr().out
    data = json.loads(shown)
    assert data["server"] == "https://cp.example:9480"
    assert data["token"] == "***"
    assert env.tokens["admin"] not in shown
    assert run(["--server", "ftp://x", "fleet", "show"]) == 2
    assert "server: 'ftp://x' is not a URL" in capsys.readouterr().err


def test_a_broken_event_stream_is_resumed_after_the_last_event(seeded: Seeded, env: Api) -> None:
    # A dropped connection cannot be made with the in-process API: this one transport
    # replays the real API's answers and breaks the first stream after one event.
    run_id = seeded.good.id
    asked: list[str | None] = []

    class Dropped(httpx.SyncByteStream):
        def __init__(self, body: bytes) -> None:
            self.body = body

        def __iter__(self) -> Iterator[bytes]:
            yield self.body.split(b"\n\n")[0] + b"\n\n"
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        real = env.client.get(request.url.path, headers=dict(request.headers))
        if len(asked) == 1:
            return httpx.Response(200, stream=Dropped(real.content))
        return httpx.Response(200, content=real.content)

    client = ControlPlaneClient(
        SERVER, env.tokens["admin"], transport=httpx.MockTransport(handler), resume_pause=0
    )
    with client:
        seen = [getattr(item, "seq", "end") for item in client.events(run_id)]
    assert asked == [None, "1"], asked
    assert seen == [1, 2, 3, "end"]


def test_a_token_sent_over_plain_http_beyond_loopback_is_warned_about(
    env: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--server", "http://cp.example.org:9480", "fleet", "show"], http=env.client) == 0
    err = capsys.readouterr().err
    assert "warning: the token goes in clear text to http://cp.example.org:9480" in err
    assert run(["--server", SERVER, "fleet", "show"], http=env.client) == 0
    assert "clear text" not in capsys.readouterr().err
