"""The remote CLI end to end: a real ``controlplane serve`` on the lab fleet, a real engineer
token, and ``controlplane --server URL deploy`` deploying a lab app through it; then the
exit codes a remote command gives match the local ones. Run under the shared e2e lock."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from controlplane.cli import run as run_cli
from tests.conftest import LAB
from tests.refapp_fixtures import kill_refapps

CLI = str(Path(sys.executable).parent / "controlplane")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    fleet: Path
    env: dict[str, str]  # for the client: no server settings of its own
    capsys: pytest.CaptureFixture[str]

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """``controlplane ARGS`` as its own process."""
        env = {k: v for k, v in self.env.items() if k != "CONTROLPLANE_TOKEN"}
        if token is not None:
            env["CONTROLPLANE_TOKEN"] = token
        return subprocess.run(
            [CLI, *args], env=env, capture_output=True, text=True, check=False, timeout=120
        )

    def run(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """The same command in this process, through ``controlplane.cli.run`` (whose code
        the script's ``main`` exits with), with the same environment: a new Python process
        costs seconds to start on two busy cores."""
        with pytest.MonkeyPatch.context() as env:
            for name in [n for n in os.environ if n.startswith("CONTROLPLANE_")]:
                env.delenv(name)
            for name, value in self.env.items():
                if name.startswith("CONTROLPLANE_") and name != "CONTROLPLANE_TOKEN":
                    env.setenv(name, value)
            if token is not None:
                env.setenv("CONTROLPLANE_TOKEN", token)
            self.capsys.readouterr()
            code = run_cli(list(args))
            printed = self.capsys.readouterr()
        return subprocess.CompletedProcess(args, code, printed.out, printed.err)


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Served]:
    """``controlplane serve`` on the lab fleet (own loopback addresses), its own data dir."""
    fleet = tmp_path / "fleet"
    shutil.copytree(LAB, fleet)
    hosts = fleet / "hosts.yml"
    hosts.write_text(hosts.read_text().replace("127.0.10.", "127.0.61."))
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLPLANE_")}
    env = {**base, "CONTROLPLANE_DATA_DIR": str(tmp_path / "var"), "CONTROLPLANE_FLEET": str(fleet)}
    port = _free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [CLI, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        yield Served(url, fleet, env, capsys)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        kill_refapps(tmp_path / "var" / "hosts")


def test_remote_deploy_through_serve_and_its_exit_codes(served: Served) -> None:
    made = served.run("tokens", "create", "--role", "engineer", "--member", "utrecht", "--json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    remote = ("--server", served.url)

    # The deploy, and the refusal at the end, run as processes of their own as a user runs
    # them; the commands in between run in this process.
    done = served.cli(*remote, "deploy", "utrecht", "--app", "reintegratie", "--json", token=token)
    assert done.returncode == 0, done.stderr
    (shown,) = json.loads(done.stdout)
    assert (shown["member"], shown["status"], shown["version"]) == (
        "utrecht",
        "successful",
        "2.1.0",
    )
    assert {h["host"]: h["release_after"] for h in shown["hosts"]} == {"lab-2": "2.1.0"}
    assert f"run {shown['id'][:8]}" not in done.stderr  # --json: no progress lines
    assert httpx.get("http://127.0.61.2:8204/healthz", timeout=5).status_code == 200
    answer = httpx.get("http://127.0.61.2:8204/version", timeout=5).json()
    assert answer == {"member": "utrecht", "app": "reintegratie", "version": "2.1.0"}

    # The same run, read back through the server, as the local CLI shows it.
    local = served.run("runs", "show", shown["id"], "--json")
    again = served.run(*remote, "runs", "show", shown["id"], "--json", token=token)
    assert again.returncode == local.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(local.stdout)

    # Without --json: the progress line as the run starts, then its table and the plan.
    plan = served.run(*remote, "deploy", "utrecht", "--app", "reintegratie", "--check", token=token)
    assert plan.returncode == 0, plan.stderr
    assert re.search(r"^run [0-9a-f]{8}: deploy utrecht/reintegratie 2\.1\.0$", plan.stderr, re.M)
    assert "plan: nothing would change" in plan.stdout

    # Exit codes as a local deploy gives them: bad input 2, refused 3, unreachable 4.
    assert (
        served.run("deploy", "utrecht", "--app", "reintegratie", "--version", "9.9").returncode == 2
    )
    cases = [
        (("deploy", "amsterdam", "--app", "reintegratie"), token, 2),
        (("deploy", "utrecht", "--app", "reintegratie", "--version", "9.9"), token, 2),
        (("runs", "list"), None, 3),
    ]
    for args, used, code in cases:
        proc = served.run(*remote, *args, token=used)
        assert proc.returncode == code, (args, proc.stderr)
        assert proc.stderr.startswith("error: "), proc.stderr
    revoked = served.run("tokens", "revoke", json.loads(made.stdout)["id"])
    assert revoked.returncode == 0, revoked.stderr
    proc = served.cli(*remote, "runs", "list", token=token)
    assert proc.returncode == 3 and "refused the token" in proc.stderr
    assert token not in proc.stderr + proc.stdout
    down = served.run("--server", f"http://127.0.0.1:{_free_port()}", "runs", "list", token=token)
    assert down.returncode == 4 and "could not be reached" in down.stderr
