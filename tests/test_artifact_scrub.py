"""Runner's `command` artifact holds the whole process environment, and so possibly secrets.
A run ends by scrubbing it; a crash skips that, so recovery and `serve`'s start scrub every
leftover artifact directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from controlplane.app import Context, build_service
from controlplane.deploy.model import RunKind, RunSpec, RunStatus
from controlplane.deploy.operations import recover_runs
from controlplane.settings import load_settings
from tests.conftest import LAB

SECRET = "canary-db-password-7f3a"


def leftover(data_dir: Path, run_id: str) -> Path:
    command = data_dir / "runs" / run_id / "artifacts" / f"1-deploy-{run_id[:4]}" / "command"
    command.parent.mkdir(parents=True)
    env = {"PATH": "/usr/bin", "DB_PASSWORD": SECRET}
    command.write_text(json.dumps({"command": ["ansible-playbook", "deploy.yml"], "env": env}))
    return command


def dead_node() -> str:
    """The node id of a process that has ended (as a control plane killed with -9 has)."""
    code = "from controlplane.deploy.processes import this_node; print(this_node())"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_recovery_scrubs_the_artifacts_a_dead_run_left(tmp_path: Path) -> None:
    ctx = Context(load_settings(fleet=LAB, data_dir=tmp_path / "var"))
    spec = RunSpec(kind=RunKind.PATCH, playbook="patch.yml", started_by="t", hosts=("lab-1",))
    run = ctx.runs.create(spec)
    ctx.runs.start(run.id, node=dead_node())
    command = leftover(ctx.data_dir, run.id)
    assert SECRET in command.read_text()

    recovered = recover_runs(ctx)

    assert [r.id for r in recovered] == [run.id]
    assert ctx.runs.get(run.id).status is RunStatus.INTERRUPTED
    kept = json.loads(command.read_text())
    assert "env" not in kept and SECRET not in command.read_text()
    assert kept["command"] == ["ansible-playbook", "deploy.yml"]
    ctx.close()


def test_serve_scrubs_leftover_artifacts_before_it_starts(tmp_path: Path) -> None:
    ctx = Context(load_settings(fleet=LAB, data_dir=tmp_path / "var"))
    command = leftover(ctx.data_dir, "0123456789abcdef")
    half_written = leftover(ctx.data_dir, "fedcba9876543210")
    half_written.write_text('{"command": ["ansible-playbook"], "env": {"DB_PASSWORD": "' + SECRET)

    build_service(ctx)

    assert SECRET not in command.read_text()
    assert not half_written.exists(), "a cut-short file may still hold part of the environment"
    ctx.close()
