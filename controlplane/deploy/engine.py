"""The deploy engine: turns requests into run records, takes locks, drives playbooks through
the runner adapter, judges rollouts and rolls back.

An execution holds the run's lease and checks it before every play and while a play runs
(``controlplane.deploy.execution``); recovery lives in ``controlplane.deploy.recovery``.

Everything outside (store, fleet, runner, clock) is passed in, so tests build their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from controlplane.clock import utc_now
from controlplane.deploy.events import release_report, to_run_event
from controlplane.deploy.execution import Execution, interrupts_cancel
from controlplane.deploy.execution import Observer as Observer
from controlplane.deploy.gating import gate_spec
from controlplane.deploy.model import (
    HostOutcome,
    HostResult,
    Run,
    RunEvent,
    RunFailure,
    RunKind,
    RunSpec,
    RunStatus,
)
from controlplane.deploy.plan import lock_requests
from controlplane.deploy.processes import RUN_ENV, kill_orphans, this_node
from controlplane.deploy.reasons import HostReason, Setup, host_reasons, play_error, run_failure
from controlplane.deploy.records import (
    PlayOutcome,
    bad_host,
    failure_of,
    prune_artifacts,
    record_hosts,
    summary,
)
from controlplane.deploy.rollout import (
    HostState,
    ReleaseReport,
    RolloutVerdict,
    judge,
)
from controlplane.deploy.runner import (
    PlaybookRequest,
    PlaybookResult,
    Tuning,
    check_request,
    run_playbook,
)
from controlplane.errors import InvalidInput, LeaseLost, LockHeld, PreflightFailed, Unreachable
from controlplane.fleet.inventory import RenderContext, render_inventory
from controlplane.fleet.model import ConnectionKind, Fleet
from controlplane.fleet.vault import vault_file
from controlplane.store.runs import RunStore
from controlplane.windows.gate import Gate

Runner = Callable[..., PlaybookResult]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    data_dir: Path
    playbooks_dir: Path
    fleet_dir: Path
    vault_password_file: Path | None = None
    artifact_retention: int = 200
    run_timeout_seconds: int | None = 3600
    strategy: str = "mitogen_linear"
    health_timeout_seconds: int = 15
    lock_poll_seconds: float = 1.0
    # A run whose heartbeat is older than this (database clock) may be taken over. Its
    # owner beats twelve times per lease and stops itself after half a lease without a
    # successful beat, so it has stopped before anyone can take over.
    lease_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.lease_seconds <= 0:
            raise InvalidInput("lease_seconds: must be above 0")

    @property
    def heartbeat_seconds(self) -> float:
        return self.lease_seconds / 12


class Engine:
    def __init__(
        self,
        fleet: Fleet,
        store: RunStore,
        config: EngineConfig,
        render: RenderContext,
        *,
        runner: Runner = run_playbook,
        clock: Callable[[], datetime] = utc_now,
        node: str | None = None,
        gate: Gate | None = None,
        on_success: Callable[[Run], None] | None = None,
        preflight: Callable[[Run], None] | None = None,
    ) -> None:
        self.fleet = fleet
        self.store = store
        self.config = config
        self.render = render
        self.runner = runner
        self.clock = clock
        self.node = node or this_node()
        self.gate = gate
        # Called after each successful deploy (the cost ledger records what the fleet
        # reserves from then on); a failure there must not fail the deploy.
        self.on_success = on_success
        # Checks a run's keys, known_hosts, vault files (and hosts) before its first play;
        # raises PreflightFailed or Unreachable, which end the run before Ansible starts.
        self.preflight = preflight

    # -- submission: a run record plus its locks ---------------------------------------------

    def submit(
        self,
        spec: RunSpec,
        *,
        queue: bool = False,
        queue_timeout: float = 3600.0,
        on_wait: Callable[[LockHeld], None] | None = None,
    ) -> Run:
        """Record the run and take its locks. A conflict raises ``LockHeld`` (nothing is
        kept), or with ``queue`` waits its turn as a queued run. The gate is asked first."""
        spec = gate_spec(self.gate, spec, self.clock(), ever_released=self.store.ever_released)
        run = self.store.create(spec, node=self.node)
        locks = lock_requests(spec)
        deadline = time.monotonic() + queue_timeout
        while True:
            try:
                self.store.acquire(run.id, locks)
                return run
            except LockHeld as held:
                if not queue or time.monotonic() > deadline:
                    self.store.discard(run.id)
                    raise
                if on_wait is not None:
                    on_wait(held)
                if self.store.get(run.id).status is RunStatus.CANCELED:
                    return self.store.get(run.id)
                if not self.store.heartbeat(run.id, run.lease):
                    raise LeaseLost(
                        f"run {run.id} was taken over while it waited for locks"
                    ) from None
                time.sleep(self.config.lock_poll_seconds)

    # -- execution -----------------------------------------------------------------------------

    def execute(self, run_id: str, observer: Observer | None = None) -> Run:
        """Run a submitted run to its end and return the final record."""
        run = self.store.start(run_id, self.node)
        ex = Execution(run, observer, fence=run.lease)
        self._notify(ex)
        heart = threading.Thread(
            target=ex.keep_beating, args=(self.store, self.config.heartbeat_seconds), daemon=True
        )
        heart.start()
        prune_artifacts(self.config.data_dir / "runs", self.config.artifact_retention)
        try:
            with interrupts_cancel(ex):
                stopped = self._preflight(ex)
                if stopped is not None:
                    final = stopped
                elif run.kind is RunKind.DEPLOY:
                    final = self._deploy(ex)
                elif run.kind is RunKind.ROLLBACK:
                    final = self._rollback(ex)
                else:
                    final = self._simple(ex)
        except LeaseLost as lost:
            # Another node owns the record now; it says what happened. Leave it be.
            log.warning("run %s: stopped, %s", run.id, lost)
            final = self.store.get(run.id)
            self._notify(replace(ex, run=final))
        except Exception as exc:  # a bug or an infrastructure fault: never leave it running
            # A request refused at the boundary to Ansible is a configuration problem.
            kind = RunFailure.CONFIG if isinstance(exc, InvalidInput) else RunFailure.FAILED
            try:
                final = self._finish(
                    ex, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", failure=kind
                )
            except LeaseLost:
                final = self.store.get(run.id)
        finally:
            ex.stop_heartbeat.set()
        return final

    def _preflight(self, ex: Execution) -> Run | None:
        """Run the preflight checks; a problem ends the run as failed before any play: a
        configuration problem (``PreflightFailed``) as ``config``, hosts that could not be
        reached as ``unreachable``. Each line that names one of the run's hosts becomes
        that host's reason."""
        if self.preflight is None:
            return None
        try:
            self.preflight(ex.run)
        except PreflightFailed as exc:
            return self._stopped(ex, RunFailure.CONFIG, exc.problems or [str(exc)])
        except Unreachable as exc:
            return self._stopped(ex, RunFailure.UNREACHABLE, str(exc).split("; "))
        return None

    def _stopped(self, ex: Execution, failure: RunFailure, problems: list[str]) -> Run:
        run = ex.run
        named: dict[str, list[str]] = {}
        for line in problems:
            host, sep, rest = line.partition(": ")
            if sep and host in run.hosts:
                named.setdefault(host, []).append(rest)
        bad = HostOutcome.UNREACHABLE if failure is RunFailure.UNREACHABLE else HostOutcome.FAILED
        ex.hold(self.store)
        for host in run.hosts:
            lines = named.get(host)
            self.store.record_host(
                HostResult(
                    run_id=run.id,
                    host=host,
                    outcome=bad if lines else HostOutcome.NOT_RUN,
                    reason="; ".join(lines) if lines else None,
                )
            )
        error = "preflight: " + "; ".join(problems)
        return self._finish(ex, RunStatus.FAILED, error=error, failure=failure)

    def _deploy(self, ex: Execution) -> Run:
        run = ex.run
        hosts = list(run.hosts)
        assert run.member and run.app and run.version
        check = run.options.check
        extravars = self._app_vars(run.member, run.app, run.version)
        extravars["cp_broken"] = run.options.broken
        extravars.update(run.options.extravars())
        play = self._play(ex, "deploy.yml", hosts, extravars, check=check)
        ended = play.ended
        reasons = self._reasons(run, hosts, play)
        ex.hold(self.store)  # a run taken over mid-play leaves its record to the new owner
        if check:
            record_hosts(self.store, run, hosts, play, None, reasons=reasons, planned=True)
            if play.result.rc == 0:
                return self._finish(ex, RunStatus.SUCCESSFUL, rc=0)
            if ended is not None:
                return self._finish(ex, ended, rc=play.result.rc)
            return self._failed(ex, play, reasons, f"plan failed: {self._bad(run, reasons)}")
        verdict = judge(hosts, run.version, play.reports, play.failed_hosts, play.unreachable_hosts)
        if ended is not None:  # canceled or timed out: say where every host was left
            record_hosts(self.store, run, hosts, play, verdict, reasons=reasons)
            return self._finish(ex, ended, rc=play.result.rc, error=summary(verdict, reasons))
        if verdict.succeeded and play.result.rc == 0:
            record_hosts(self.store, run, hosts, play, verdict)
            return self._finish(ex, RunStatus.SUCCESSFUL, rc=0)
        finals: dict[str, str | None] = {}
        notes = [summary(verdict, reasons)]
        for target, back in verdict.rollback_plan().items():
            vars_ = self._app_vars(run.member, run.app, target)
            rb = self._play(ex, "rollback.yml", back, vars_, check=False)
            ok = {r.host for r in rb.reports if r.healthy and r.after == target}
            for r in rb.reports:
                finals[r.host] = r.after
            why = self._reasons(run, back, rb)
            failed = [bad_host(h, why.get(h), None, "failed") for h in sorted(set(back) - ok)]
            notes.append(
                f"rolled back {', '.join(sorted(back))} to {target}"
                + (f" (failed on {', '.join(failed)})" if failed else "")
            )
        fresh = verdict.without_previous_release()
        if fresh:
            notes.append(f"no earlier release to return to on {', '.join(fresh)}")
        finals.update(self._untouched_releases(ex, verdict, finals))
        ex.hold(self.store)
        record_hosts(self.store, run, hosts, play, verdict, finals, reasons)
        return self._failed(ex, play, reasons, "; ".join(notes))

    def _failed(
        self, ex: Execution, play: PlayOutcome, reasons: Mapping[str, HostReason], error: str
    ) -> Run:
        """End a run as failed, with the kind of failure its hosts' reasons say; a play
        that failed before any host did is judged by its own error line."""
        outcomes = {h.host: h.outcome for h in self.store.host_results(ex.run.id)}
        failure = failure_of(outcomes, reasons)
        if not reasons:
            stopped = self._play_error(play)
            if stopped is not None:
                failure = run_failure([stopped.kind])
                error = f"{ex.run.playbook}: {stopped.text}"
        return self._finish(
            ex, RunStatus.FAILED, rc=play.result.rc or 1, error=error, failure=failure
        )

    def _play_error(self, play: PlayOutcome) -> HostReason | None:
        stdout = play.result.artifacts_dir / "stdout"
        try:
            text = stdout.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        return play_error(text, self._setup(None, []))

    def _bad(self, run: Run, reasons: Mapping[str, HostReason]) -> str:
        """The bad hosts with their reasons, for an error line."""
        named = [bad_host(h, reasons[h], None, "failed") for h in run.hosts if h in reasons]
        return ", ".join(named) or "see the run's log"

    def _reasons(self, run: Run, hosts: list[str], play: PlayOutcome) -> dict[str, HostReason]:
        return host_reasons(play.events, self._setup(run, hosts))

    def _setup(self, run: Run | None, hosts: list[str]) -> Setup:
        """What the reasons need to know: each host's key file (and whether it is there),
        the member's vault file, whether a vault password is configured."""
        keys: dict[str, str] = {}
        for name in hosts:
            host = self.fleet.host(name)
            if host.connection is ConnectionKind.SSH and host.private_key_file:
                keys[name] = str(host.private_key_file)
        missing = frozenset(h for h, key in keys.items() if not Path(key).exists())
        vault = None if run is None or run.member is None else self._vault_file(run.member)
        return Setup(
            fleet_dir=self.config.fleet_dir,
            keys=keys,
            missing_keys=missing,
            vault_file=None if vault is None else str(vault),
            vault_password=self.config.vault_password_file is not None,
        )

    def _vault_file(self, member: str) -> Path:
        return vault_file(self.config.fleet_dir, member)

    def _untouched_releases(
        self, ex: Execution, verdict: RolloutVerdict, known: Mapping[str, str | None]
    ) -> dict[str, str | None]:
        """Ask the hosts the rollout never reached which release they run, so the record
        says where every host was left."""
        run = ex.run
        assert run.member and run.app
        unknown = [v.host for v in verdict.hosts if v.state is HostState.NOT_RUN]
        unknown = [h for h in unknown if h not in known]
        if not unknown:
            return {}
        vars_ = {"cp_member": run.member, "cp_app": run.app}
        status = self._play(ex, "status.yml", unknown, vars_, check=False)
        return {r.host: r.after for r in status.reports}

    def _rollback(self, ex: Execution) -> Run:
        run = ex.run
        assert run.member and run.app and run.version
        hosts = list(run.hosts)
        play = self._play(
            ex, "rollback.yml", hosts, self._app_vars(run.member, run.app, run.version), False
        )
        verdict = judge(hosts, run.version, play.reports, play.failed_hosts, play.unreachable_hosts)
        reasons = self._reasons(run, hosts, play)
        ex.hold(self.store)
        record_hosts(self.store, run, hosts, play, verdict, reasons=reasons)
        ended = play.ended
        if ended is not None:
            return self._finish(ex, ended, rc=play.result.rc)
        if verdict.succeeded and play.result.rc == 0:
            return self._finish(ex, RunStatus.SUCCESSFUL, rc=0)
        return self._failed(ex, play, reasons, summary(verdict, reasons))

    def _simple(self, ex: Execution) -> Run:
        """Patch, drift and ad-hoc playbooks: one play, judged by its result."""
        run = ex.run
        check = run.options.check or run.kind is RunKind.DRIFT
        extravars = run.options.extravars()
        if run.member is not None:
            extravars["cp_member"] = run.member
        play = self._play(ex, run.playbook, list(run.hosts), extravars, check)
        reasons = self._reasons(run, list(run.hosts), play)
        ex.hold(self.store)
        record_hosts(self.store, run, list(run.hosts), play, None, reasons=reasons)
        ended = play.ended
        if ended is not None:
            return self._finish(ex, ended, rc=play.result.rc)
        if play.result.rc == 0:
            return self._finish(ex, RunStatus.SUCCESSFUL, rc=0)
        error = f"{run.playbook} failed (rc {play.result.rc})"
        if reasons:
            error = f"{run.playbook} failed: {self._bad(run, reasons)}"
        return self._failed(ex, play, reasons, error)

    # -- one playbook --------------------------------------------------------------------------

    def _app_vars(self, member: str, app: str, version: str) -> dict[str, Any]:
        catalogue = self.fleet.app(app)
        release = catalogue.version(version)
        out: dict[str, Any] = {
            "cp_member": member,
            "cp_app": app,
            "cp_version": version,
            "cp_broken": release.broken,
            "cp_health_path": catalogue.health_path,
            "cp_health_timeout": self.config.health_timeout_seconds,
        }
        # Passed even when it is missing: the deploy then stops on every host with
        # "vault file <path> missing" before anything changes.
        out["cp_vault_file"] = str(self._vault_file(member))
        return out

    def _play(
        self,
        ex: Execution,
        playbook: str,
        hosts: list[str],
        extravars: Mapping[str, Any],
        check: bool,
    ) -> PlayOutcome:
        ex.hold(self.store)
        ex.plays += 1
        tuning = Tuning(
            forks=max(1, min(len(hosts), 25)),
            strategy=self.config.strategy,
        )
        outcome = self.run_once(ex, playbook, hosts, extravars, check, tuning)
        record = tuning.as_dict()
        if tuning.strategy != "linear" and outcome.nothing_ran:
            # The mitogen strategy failed before any task ran: run again the stock way.
            record = {**Tuning(forks=tuning.forks).as_dict(), "fallback_from": tuning.strategy}
            outcome = self.run_once(
                ex, playbook, hosts, extravars, check, Tuning(forks=tuning.forks)
            )
        outcome.tuning = record
        self.store.set_tuning(ex.run.id, {**ex.run.tuning, playbook: record})
        ex.run = replace(ex.run, tuning={**ex.run.tuning, playbook: record})
        return outcome

    def run_once(
        self,
        ex: Execution,
        playbook: str,
        hosts: list[str],
        extravars: Mapping[str, Any],
        check: bool,
        tuning: Tuning,
    ) -> PlayOutcome:
        run = ex.run
        events: list[RunEvent] = []
        reports: list[ReleaseReport] = []
        times: dict[str, tuple[datetime, datetime]] = {}

        def on_event(raw: dict[str, Any]) -> bool:
            event = to_run_event(run.id, ex.seq, raw)
            if event is None:
                return False
            ex.seq += 1
            self.store.append_events(run.id, [event])
            events.append(event)
            if event.host:
                first = times.get(event.host, (event.created_at, event.created_at))[0]
                times[event.host] = (first, event.created_at)
            report = release_report(event)
            if report is not None:
                reports.append(report)
            if ex.observer is not None:
                ex.observer.on_event(run, event)
            # We keep our own scrubbed copy; runner need not write the raw event to disk.
            return False

        envvars = {RUN_ENV: run.id}
        if self.config.vault_password_file is not None:
            envvars["ANSIBLE_VAULT_PASSWORD_FILE"] = str(self.config.vault_password_file)
        request = PlaybookRequest(
            playbook=self.config.playbooks_dir / playbook,
            inventory=render_inventory(self.fleet, self.render),
            extravars=dict(extravars),
            # Never None for no hosts: that would be every host of the fleet.
            limit=",".join(hosts),
            check=check,
            tuning=tuning,
            envvars=envvars,
            timeout_seconds=self.config.run_timeout_seconds,
            data_dir=self.config.data_dir,
        )
        ident = f"{ex.plays}-{playbook.removesuffix('.yml')}-{tuning.strategy}"
        check_request(request, ident)  # refused before any runner starts, whichever runs it
        result = self.runner(
            request,
            self.config.data_dir / "runs" / run.id,
            ident,
            event_handler=on_event,
            cancel_callback=lambda: self._cancel_wanted(ex),
        )
        if result.status in ("canceled", "timeout"):
            # runner ends ansible's process group; helpers outside it (mitogen's
            # multiplexer) are ended here, so a canceled run leaves nothing working.
            kill_orphans(run.id)
        return PlayOutcome(result, events, reports, times, tuning.as_dict())

    def _finish(
        self,
        ex: Execution,
        status: RunStatus,
        rc: int | None = None,
        error: str | None = None,
        failure: RunFailure | None = None,
    ) -> Run:
        if ex.cancel_seen and status is RunStatus.FAILED:
            status = RunStatus.CANCELED
        if status is RunStatus.FAILED and failure is None:
            failure = RunFailure.FAILED
        if status is not RunStatus.FAILED:
            failure = None
        ex.run = self.store.transition(
            ex.run.id, status, rc=rc, error=error, fence=ex.fence, failure=failure
        )
        self._notify(ex)
        if status is RunStatus.SUCCESSFUL and self.on_success is not None:
            try:
                self.on_success(ex.run)
            except Exception as exc:  # the run stands; the hook's failure is only reported
                log.warning("after run %s: %s", ex.run.id, exc)
        return ex.run

    def _notify(self, ex: Execution) -> None:
        if ex.observer is not None:
            ex.observer.on_status(ex.run)

    # -- cancellation, heartbeat, signals -------------------------------------------------------

    def cancel(self, run_id: str) -> Run:
        return self.store.request_cancel(run_id)

    def _cancel_wanted(self, ex: Execution) -> bool:
        return ex.cancel_wanted(self.store, self.config.lease_seconds)
