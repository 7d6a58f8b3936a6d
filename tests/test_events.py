"""What we keep of runner events: an allow-list, masked secrets, and the release reports."""

from __future__ import annotations

from controlplane.deploy.events import release_report, to_run_event


def raw(event: str, **data: object) -> dict[str, object]:
    return {"event": event, "created": "2026-11-02T09:00:00.000001", "event_data": data}


def test_only_allow_listed_result_keys_survive() -> None:
    e = to_run_event(
        "r1",
        3,
        raw(
            "runner_on_ok",
            host="lab-1",
            task="Render config",
            res={"changed": True, "content": "db_password: hunter2", "invocation": {"x": 1}},
        ),
    )
    assert e is not None
    assert e.seq == 3 and e.host == "lab-1" and e.task == "Render config"
    assert e.data == {"changed": True}
    assert e.created_at.tzinfo is not None


def test_failure_message_kept_but_secrets_masked() -> None:
    e = to_run_event(
        "r1",
        0,
        raw("runner_on_failed", host="lab-2", task="t", res={"failed": True, "msg": "bad hunter2"}),
        secrets=["hunter2"],
    )
    assert e is not None
    assert e.data["msg"] == "bad ********"


def test_no_log_results_keep_no_message() -> None:
    e = to_run_event(
        "r1",
        0,
        raw(
            "runner_on_failed",
            host="h",
            task="t",
            res={"failed": True, "msg": "secret", "_ansible_no_log": True},
        ),
    )
    assert e is not None
    assert "msg" not in e.data and e.data["no_log"] is True


def test_verbose_and_unknown_events_are_dropped() -> None:
    assert to_run_event("r1", 0, raw("verbose")) is None
    assert to_run_event("r1", 0, {"event": "runner_on_start_unknown"}) is None


def test_release_report_is_read_from_the_report_task() -> None:
    msg = {
        "member": "amsterdam",
        "app": "uitkering",
        "port": 8101,
        "before": "1.0.0",
        "after": "1.1.0",
        "healthy": True,
    }
    e = to_run_event(
        "r1",
        0,
        raw(
            "runner_on_ok",
            host="lab-1",
            task="cp-report-release",
            res={"changed": False, "msg": msg},
        ),
    )
    assert e is not None
    r = release_report(e)
    assert r is not None
    assert (r.host, r.before, r.after, r.healthy, r.port) == ("lab-1", "1.0.0", "1.1.0", True, 8101)
    other = to_run_event("r1", 1, raw("runner_on_ok", host="lab-1", task="other", res={"msg": msg}))
    assert other is not None and release_report(other) is None
