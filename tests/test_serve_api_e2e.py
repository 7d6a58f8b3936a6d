"""End to end over HTTP: a real ``controlplane serve`` on the lab fleet, an engineer token
made with ``controlplane tokens create``, a real check-mode run (a plan) launched with
``POST /api/v1/runs/deploy`` and followed over server-sent events to ``event: end``; the
final record is what ``controlplane runs show ID --json`` prints from the same data dir.

Starts Ansible: run under the shared lock (see the README's test section)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.cli import run as run_cli
from tests.conftest import LAB
from tests.test_serve_service import ServeProcess

MEMBER = "amsterdam"


def cli_json(env: dict[str, str], capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """``controlplane ARGS --json`` with ``env``, run in this process (``controlplane.cli.run``,
    whose code the script exits with): a new Python process costs seconds to start."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("CONTROLPLANE_")]:
            patch.delenv(name)
        for name, value in env.items():
            if name.startswith("CONTROLPLANE_"):
                patch.setenv(name, value)
        capsys.readouterr()
        code = run_cli([*args, "--json"])
        done = capsys.readouterr()
    assert code == 0, done.err
    return json.loads(done.out)


def follow(client: httpx.Client, run_id: str) -> list[dict[str, str]]:
    """Every event of the run's stream, as sent, until the stream ends."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    with client.stream("GET", f"/api/v1/runs/{run_id}/events") as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                current[key] = value
    return events


def test_a_plan_launched_over_http_streams_its_events_and_ends_as_runs_show_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        **os.environ,
        "CONTROLPLANE_DATA_DIR": str(tmp_path / "var"),
        "CONTROLPLANE_FLEET": str(LAB),
        "CONTROLPLANE_PROBE_INTERVAL_SECONDS": "30",
    }
    for name in ("CONTROLPLANE_DATABASE_URL", "CONTROLPLANE_SERVER", "CONTROLPLANE_TOKEN"):
        env.pop(name, None)
    issued = cli_json(env, capsys, "tokens", "create", "--role", "engineer", "--member", MEMBER)
    serve = ServeProcess(env)
    try:
        headers = {"Authorization": f"Bearer {issued['token']}"}
        with httpx.Client(base_url=serve.url, headers=headers, timeout=90) as client:
            body = {"member": MEMBER, "app": "uitkering", "check": True, "reason": "e2e plan"}
            launched = client.post("/api/v1/runs/deploy", json=body)
            assert launched.status_code == 202, launched.text
            [run] = launched.json()["runs"]
            assert run["member"] == MEMBER and run["options"]["check"] is True
            # Taken over by its executor before the answer: never left queued.
            assert run["status"] != "queued"

            events = follow(client, run["id"])
            shown = client.get(f"/api/v1/runs/{run['id']}").json()
    finally:
        code = serve.stop()
    assert code == 0, "".join(serve.lines)
    assert "Traceback" not in "".join(serve.lines)

    *played, end = events
    assert end["event"] == "end" and "id" not in end
    assert [int(e["id"]) for e in played] == list(range(len(played)))
    names = [e["event"] for e in played]
    assert "playbook_on_stats" in names and "runner_on_ok" in names
    assert all(json.loads(e["data"])["run_id"] == run["id"] for e in played)

    final = json.loads(end["data"])
    assert final["status"] == "successful", final
    [printed] = cli_json(env, capsys, "runs", "show", run["id"])
    assert final == printed == shown
    assert {h["host"] for h in final["hosts"]} == {"lab-1", "lab-2"}
    assert final["changes"] is not None
