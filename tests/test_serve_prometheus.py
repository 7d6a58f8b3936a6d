"""A real Prometheus (Debian's ``prometheus``) on loopback scrapes ``controlplane serve``,
loads the shipped rules, and answers PromQL about a member's availability."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.access.policy import Role
from tests.conftest import ROOT, missing
from tests.test_serve_service import ServeProcess, issue_token, write_env
from tests.test_uptime_probes import FakeApp

RULES = ROOT / "docs" / "prometheus" / "rules" / "controlplane.rules.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, tmp: Path, target: str, token_file: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            missing("prometheus is not installed; scripts/setup.sh installs Debian's prometheus")
        assert binary is not None
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "controlplane",
                    "scrape_timeout": "1s",
                    # As in the shipped docs/prometheus/prometheus.yml: a metrics token.
                    "authorization": {"credentials_file": str(token_file)},
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = tmp / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_for(self, promql: str, timeout: float = 60) -> list[dict[str, Any]]:
        # The first scrape comes about 5 s after start: Prometheus applies discovered
        # targets on a 5-second tick.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited:\n" + self.log.read_text())
            try:
                result = self.query(promql)
            except OSError:
                result = []
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"no answer to {promql}\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def app() -> Iterator[FakeApp]:
    started = FakeApp("127.0.40.6")
    yield started
    started.stop()


def test_prometheus_scrapes_serve_and_answers_availability(app: FakeApp, tmp_path: Path) -> None:
    env = write_env(tmp_path, [app])
    token_file = tmp_path / "metrics.token"
    token_file.write_text(issue_token(env, Role.METRICS) + "\n")
    token_file.chmod(0o600)
    serve = ServeProcess(env)
    prometheus: Prometheus | None = None
    try:
        prometheus = Prometheus(tmp_path, serve.url.removeprefix("http://"), token_file)
        [up] = prometheus.wait_for('up{job="controlplane"} == 1')
        [availability] = prometheus.wait_for(
            'controlplane_availability_ratio{member="amsterdam",app="uitkering",period="1h"}'
        )
        assert float(availability["value"][1]) == 1.0
        [sla] = prometheus.wait_for(
            'controlplane_sla_availability_ratio{member="amsterdam",period="30d"}'
        )
        assert float(sla["value"][1]) == 1.0
        # The shipped recording rules load and evaluate over the scraped series.
        [slo] = prometheus.wait_for('member:controlplane_slo:ratio{member="amsterdam"}')
        assert float(slo["value"][1]) == 0.995
        assert up["metric"]["instance"] == serve.url.removeprefix("http://")
    finally:
        if prometheus is not None:
            prometheus.stop()
        assert serve.stop() == 0
