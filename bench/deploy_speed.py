"""How much faster the control plane's tuned runs are than stock ansible-playbook.

Deploys one member's app to four real sshd hosts (127.0.0.2-5) three ways, each on fresh
host roots so every run does the same real work:

  stock    ansible-playbook as shipped: no pipelining, no ControlPersist, linear strategy
  tuned    pipelining + SSH ControlPersist + forks sized to the hosts (linear)
  mitogen  the tuned run with the mitogen_linear strategy (what the control plane uses)

and prints wall-clock seconds and ratios measured side by side in one run.

    .venv/bin/python bench/deploy_speed.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controlplane.deploy.runner import PlaybookRequest, Tuning, run_playbook  # noqa: E402
from controlplane.fleet.inventory import RenderContext, render_inventory  # noqa: E402
from tests.conftest import LAB, ssh_fleet  # noqa: E402
from tests.refapp_fixtures import kill_refapps  # noqa: E402
from tests.sshd import start_lab  # noqa: E402

STOCK_ENV = {
    # ansible-playbook's own defaults, stated explicitly so the control plane's tuning
    # (set by the runner adapter) is switched off.
    "ANSIBLE_PIPELINING": "False",
    "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
    "ANSIBLE_SSH_TRANSFER_METHOD": "smart",
    "ANSIBLE_STRATEGY": "linear",
    "ANSIBLE_FORKS": "5",
}


def one(mode: str, work: Path, lab_dir: Path) -> float:
    lab = start_lab(lab_dir, count=4)
    try:
        lab.fresh_roots(work / "roots")
        fleet = ssh_fleet(lab, hosts=4)
        inventory = render_inventory(fleet, RenderContext(work, sys.executable))
        app = fleet.apps[0]
        extravars = {
            "cp_member": "amsterdam",
            "cp_app": app.slug,
            "cp_version": app.latest_good.version,
            "cp_broken": False,
            "cp_health_path": app.health_path,
            "cp_vault_file": str(LAB / "vault" / "amsterdam.yml"),
        }
        envvars = {"ANSIBLE_VAULT_PASSWORD_FILE": str(LAB / "vault-password")}
        tuning = Tuning(forks=4, strategy="mitogen_linear" if mode == "mitogen" else "linear")
        if mode == "stock":
            envvars.update(STOCK_ENV)
        started = time.monotonic()
        result = run_playbook(
            PlaybookRequest(
                ROOT / "controlplane" / "playbooks" / "deploy.yml",
                inventory,
                extravars,
                limit=",".join(sorted(inventory["all"]["hosts"])),
                tuning=tuning,
                envvars=envvars,
            ),
            work / "runner",
            mode,
        )
        elapsed = time.monotonic() - started
        if result.status != "successful":
            raise SystemExit(f"{mode}: run {result.status}; see {result.artifacts_dir}/stdout")
        return elapsed
    finally:
        kill_refapps(work / "roots")
        lab.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"stock": [], "tuned": [], "mitogen": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in times:  # interleaved, so load changes hit every mode alike
                base = Path(tmp) / f"{mode}-{r}"
                times[mode].append(one(mode, base / "work", base / "sshd"))
    stock = statistics.median(times["stock"])
    print("deploy.yml, one member's app on 4 sshd hosts, fresh roots each run")
    print(f"{'mode':10} {'median s':>9} {'runs':>20} {'speed-up vs stock':>18}")
    for mode, values in times.items():
        med = statistics.median(values)
        runs = " ".join(f"{v:.1f}" for v in values)
        print(f"{mode:10} {med:9.1f} {runs:>20} {stock / med:17.2f}x")


if __name__ == "__main__":
    main()
