"""What the HTTP API adds to a run: a check-mode run (a plan) of one lab app over the API
against the same run through the CLI.

Run: ``.venv/bin/python bench/api_overhead.py [--repeat N] [--member M] [--app A]``.

It starts a real ``controlplane serve`` on the lab fleet in a temporary data directory,
makes an admin token, and then, N times in turn (default 5), times

- *API*: ``POST /api/v1/runs/deploy`` with ``check: true``, then the run's event stream
  to ``event: end``: the time to the 202 answer, to the first event on the stream, and to
  the end (the run's wall time as an API client sees it);
- *CLI*: ``controlplane deploy MEMBER --app A --check --json`` as a new process, to its
  exit (the wall time a person at the terminal sees).

It prints the median of each, and the ratio of the API's wall time to the CLI's. Both
include a Python start: the CLI's own process, and over the API the detached executor
that ``serve`` starts for each run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "controlplane" / "inventories" / "lab"
CLI = str(Path(sys.executable).parent / "controlplane")


def start_serve(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [CLI, "serve", "--address", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            m = re.search(r"serving (http://\S+)/metrics", raw.decode(errors="replace"))
            if m:
                found.append(m.group(1))
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(30):
        proc.kill()
        raise SystemExit("serve did not start")
    return proc, found[0]


def over_api(client: httpx.Client, member: str, app: str) -> tuple[float, float, float]:
    """Seconds to the 202, to the first event on the stream, and to ``event: end``."""
    started = time.perf_counter()
    body = {"member": member, "app": app, "check": True, "reason": "bench"}
    response = client.post("/api/v1/runs/deploy", json=body)
    answered = time.perf_counter() - started
    if response.status_code != 202:
        raise SystemExit(f"deploy over the API: {response.status_code} {response.text}")
    [run] = response.json()["runs"]
    first: float | None = None
    status = "?"
    with client.stream("GET", f"/api/v1/runs/{run['id']}/events") as stream:
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
                if first is None and event != "end":
                    first = time.perf_counter() - started
            elif line.startswith("data: ") and event == "end":
                status = json.loads(line.removeprefix("data: "))["status"]
    ended = time.perf_counter() - started
    if status != "successful":
        raise SystemExit(f"the run over the API ended {status}")
    return answered, first if first is not None else ended, ended


def over_cli(env: dict[str, str], member: str, app: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [CLI, "deploy", member, "--app", app, "--check", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"deploy through the CLI: exit {done.returncode}: {done.stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--member", default="amsterdam")
    parser.add_argument("--app", default="uitkering")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cp-bench-api-") as tmp:
        env = {
            **os.environ,
            "CONTROLPLANE_DATA_DIR": str(Path(tmp) / "var"),
            "CONTROLPLANE_FLEET": str(LAB),
        }
        for name in ("CONTROLPLANE_DATABASE_URL", "CONTROLPLANE_SERVER", "CONTROLPLANE_TOKEN"):
            env.pop(name, None)
        issued = subprocess.run(
            [CLI, "tokens", "create", "--role", "admin", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        token = json.loads(issued.stdout)["token"]
        serve, url = start_serve(env)
        api: list[tuple[float, float, float]] = []
        cli: list[float] = []
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
                for _ in range(args.repeat):
                    api.append(over_api(client, args.member, args.app))
                    cli.append(over_cli(env, args.member, args.app))
        finally:
            serve.terminate()
            serve.wait(30)
    answer, first, api_wall = (statistics.median(x[i] for x in api) for i in range(3))
    cli_wall = statistics.median(cli)
    print(f"check-mode run of {args.member}/{args.app} on the lab fleet, median of {args.repeat}")
    print(f"  API: POST to 202                     {answer:7.2f} s")
    print(f"  API: POST to first SSE event         {first:7.2f} s")
    print(f"  API: POST to event: end (wall)       {api_wall:7.2f} s")
    print(f"  CLI: deploy --check --json (wall)    {cli_wall:7.2f} s")
    print(f"  API / CLI wall time                  {api_wall / cli_wall:7.2f}")


if __name__ == "__main__":
    main()
