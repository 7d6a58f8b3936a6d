"""A client for a remote control plane's ``/api/v1``: the same operations the CLI runs
locally, answered with the same response models (``controlplane.schemas``).

Every error the server sends back (``{"error": {"code", "message", "field"}}``) becomes the
matching error of ``controlplane.errors``, so the CLI maps it to the same exit code as the
local operation: 401 and 403 refused, 404 not found, 409 refused (the gate's message), 413
and 422 bad input, 503 unreachable, other 5xx failed. A server that cannot be reached at all
is ``Unreachable``. The token travels only in the ``Authorization`` header; no message,
log line or exception text ever holds it.

The transport is passed in (``transport=``), so tests talk to the real API in-process.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from controlplane.deploy.model import (
    HostOutcome,
    HostResult,
    Run,
    RunEvent,
    RunFailure,
    RunKind,
    RunStatus,
)
from controlplane.deploy.options import RunOptions
from controlplane.errors import (
    ControlPlaneError,
    Forbidden,
    GateClosed,
    InvalidInput,
    NotFound,
    OperationFailed,
    PayloadTooLarge,
    Refused,
    RunNotFound,
    Unauthenticated,
    Unreachable,
)
from controlplane.schemas.costs import AllocationOut
from controlplane.schemas.fleet import FleetOut
from controlplane.schemas.runs import (
    HostResultOut,
    RunDetailOut,
    RunEventOut,
    RunOut,
    RunPageOut,
)
from controlplane.schemas.schedule import ScheduledJobOut
from controlplane.schemas.uptime import AvailabilityOut
from controlplane.schemas.windows import ConflictsOut, DecisionOut, OccurrencesOut

API = "/api/v1"
# The server sends a keepalive comment every 15 s while a run is quiet; a stream silent for
# much longer than that is a dead connection, not a slow run.
STREAM_READ_TIMEOUT = 60.0
# A followed stream that breaks is resumed from the last event seen, this many times.
STREAM_RESUMES = 5
RESUME_PAUSE_SECONDS = 1.0

M = TypeVar("M", bound=BaseModel)
Params = Mapping[str, str | int | Sequence[str] | None]


def server_label(url: str) -> str:
    """``scheme://host:port`` of ``url``: what an error may name (never userinfo or query)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or 'http'}://{host}{port}"


def exposes_token(url: str) -> bool:
    """True when a bearer token sent to ``url`` would cross a network in clear text: plain
    http to anything but this machine's loopback."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def check_server_url(url: str) -> str:
    """The server URL without a trailing slash; ``InvalidInput`` unless http(s)://host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"server: {url!r} is not a URL like http://host:9480")
    return url.rstrip("/")


@dataclass(frozen=True)
class Download:
    """A file the server sent: its bytes, content type and suggested file name."""

    content: bytes
    content_type: str
    filename: str | None


@dataclass(frozen=True)
class StreamEnd:
    """The last message of a run's event stream: the run as it ended."""

    run: RunOut


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def error_for(response: httpx.Response) -> ControlPlaneError:
    """The error-tree error matching the server's error answer."""
    error = _error_body(response)
    status = response.status_code
    message = str(error.get("message") or f"the server answered HTTP {status}")
    code = str(error.get("code") or "")
    if status == 401:
        return Unauthenticated(f"the server refused the token: {message}")
    if status == 403:
        return Forbidden(message)
    if status == 404:
        return RunNotFound(message) if code == "run_not_found" else NotFound(message)
    if status == 409:
        gate = error.get("gate")
        if code == "gate_closed" or isinstance(gate, dict):
            # The gate's full message (the error's message is cut to one line).
            full = gate.get("message") if isinstance(gate, dict) else None
            return GateClosed(str(full or message), gate)
        return Refused(message)
    if status == 410:
        return OperationFailed(message)  # gone for good (a pruned run log): it failed
    if status == 413:
        return PayloadTooLarge(message)
    if status in (400, 405, 415, 422) or 400 <= status < 500:
        return InvalidInput(message)
    if status in (502, 503, 504):
        return Unreachable(message)
    return OperationFailed(message)


class ControlPlaneClient:
    """The remote operations; each returns the response model the local operation returns."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
        resume_pause: float = RESUME_PAUSE_SECONDS,
    ) -> None:
        self.server = check_server_url(server)
        self.label = server_label(self.server)
        self.resume_pause = resume_pause
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        # ``http``: a client the caller built (a test's in-process TestClient); it is used
        # as it is, with its own base URL, and not closed here.
        self._owned = http is None
        self._http = http or httpx.Client(
            base_url=self.server, transport=transport, timeout=timeout
        )

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            headers = {"Accept": "application/json", **self._auth}
            response = self._http.request(method, API + path, headers=headers, **kw)
        except httpx.TimeoutException:
            raise Unreachable(f"the control plane at {self.label} did not answer in time") from None
        except httpx.TransportError as exc:
            raise Unreachable(
                f"the control plane at {self.label} could not be reached ({type(exc).__name__})"
            ) from None
        if response.status_code >= 400:
            raise error_for(response)
        return response

    def _get(self, model: type[M], path: str, params: Params | None = None) -> M:
        return _parse(model, self._send("GET", path, params=_clean(params)))

    def _list(self, model: type[M], path: str, params: Params | None = None) -> list[M]:
        response = self._send("GET", path, params=_clean(params))
        try:
            return TypeAdapter(list[model]).validate_json(response.content)  # type: ignore[valid-type]
        except ValidationError:
            raise OperationFailed(f"unexpected answer from {self.label}: not a list") from None

    def _post_runs(self, path: str, body: dict[str, Any]) -> list[RunOut]:
        response = self._send("POST", path, json=body)
        return _parse(_Runs, response).runs

    # -- fleet ---------------------------------------------------------------------------

    def fleet(self) -> FleetOut:
        return self._get(FleetOut, "/fleet")

    # -- runs ----------------------------------------------------------------------------

    def deploy(self, member: str, **body: Any) -> list[RunOut]:
        """Submit a deploy (gate asked, locks taken); the server executes the runs."""
        return self._post_runs("/runs/deploy", {"member": member, **_clean(body)})

    def rollback(self, member: str, app: str, **body: Any) -> list[RunOut]:
        return self._post_runs("/runs/rollback", {"member": member, "app": app, **_clean(body)})

    def runs(self, params: Params, *, limit: int, cursor: str | None) -> RunPageOut:
        return self._get(RunPageOut, "/runs", {**params, "limit": limit, "cursor": cursor})

    def run(self, run_id: str) -> RunDetailOut:
        return self._get(RunDetailOut, f"/runs/{_seg(run_id)}")

    def run_log(self, run_id: str) -> str:
        """The run's whole output, play by play, scrubbed of secrets (text)."""
        response = self._send("GET", f"/runs/{_seg(run_id)}/log")
        return response.text

    def cancel(self, run_id: str) -> RunOut:
        return _parse(RunOut, self._send("POST", f"/runs/{_seg(run_id)}/cancel"))

    def events(self, run_id: str) -> Iterator[RunEventOut | StreamEnd]:
        """The run's events as they happen (replayed when it already ended), then its end.

        A stream that breaks off before its end is resumed after the last event seen
        (``Last-Event-ID``), a few times, so a restarted server or a dropped connection
        does not lose the run's end."""
        last: int | None = None
        path = f"/runs/{_seg(run_id)}/events"
        for attempt in range(STREAM_RESUMES + 1):
            if attempt:
                time.sleep(self.resume_pause)
            headers = {"Accept": "text/event-stream", **self._auth}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                for name, ident, data in self._stream(path, headers):
                    if name == "end":
                        yield StreamEnd(_parse_text(RunOut, data, self.label))
                        return
                    event = _parse_text(RunEventOut, data, self.label)
                    last = int(ident) if ident and ident.isdigit() else event.seq
                    yield event
            except httpx.TransportError:
                pass  # dropped, timed out or refused: resume below
        raise Unreachable(f"the event stream from {self.label} broke off before the run ended")

    def _stream(self, path: str, headers: dict[str, str]) -> Iterator[tuple[str, str | None, str]]:
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
        with self._http.stream("GET", API + path, headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                raise error_for(response)
            yield from parse_sse(response.iter_lines())

    # -- windows, schedule, uptime, costs ------------------------------------------------

    def windows(self, params: Params) -> OccurrencesOut:
        return self._get(OccurrencesOut, "/windows", params)

    def check(self, params: Params) -> DecisionOut:
        return self._get(DecisionOut, "/windows/check", params)

    def check_host(self, params: Params) -> DecisionOut:
        return self._get(DecisionOut, "/windows/check-host", params)

    def conflicts(self, params: Params) -> ConflictsOut:
        return self._get(ConflictsOut, "/windows/conflicts", params)

    def ics(self, member: str, params: Params | None = None) -> bytes:
        path = f"/members/{_seg(member)}/calendar.ics"
        return self._send("GET", path, params=_clean(params)).content

    def schedule(self) -> list[ScheduledJobOut]:
        return self._list(ScheduledJobOut, "/schedule")

    def uptime(self, params: Params) -> list[AvailabilityOut]:
        return self._list(AvailabilityOut, "/uptime", params)

    def allocation(self, period: str) -> AllocationOut:
        return self._get(AllocationOut, f"/costs/{_seg(period)}")

    def report(self, period: str, fmt: str) -> Download:
        response = self._send("GET", f"/costs/{_seg(period)}/report", params={"format": fmt})
        disposition = response.headers.get("content-disposition", "")
        filename = None
        if "filename=" in disposition:
            filename = disposition.split("filename=", 1)[1].strip().strip('"') or None
        return Download(response.content, response.headers.get("content-type", ""), filename)


class _Runs(BaseModel):
    runs: list[RunOut]


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, str | None, str]]:
    """``(event, id, data)`` per server-sent event; comments (keepalives) are skipped."""
    name: str = "message"
    ident: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield name, ident, "\n".join(data)
            name, ident, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "id":
            ident = value
        elif key == "data":
            data.append(value)
    if data:
        yield name, ident, "\n".join(data)


def run_record(run: RunOut) -> Run:
    """The run record behind a ``RunOut``, for code that decides on runs (exit codes,
    progress), so a remote run is judged exactly like a local one."""
    return Run(
        id=run.id,
        kind=RunKind(run.kind),
        status=RunStatus(run.status),
        playbook=run.playbook,
        started_by=run.started_by,
        reason=run.reason,
        member=run.member,
        app=run.app,
        version=run.version,
        hosts=tuple(h.host for h in run.hosts),
        options=RunOptions.from_json(run.options),
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        rc=run.rc,
        error=run.error,
        tuning=run.tuning,
        emergency_reason=run.emergency_reason,
        cancel_requested=run.cancel_requested,
        failure=None if run.failure is None else RunFailure(run.failure),
    )


def host_record(run_id: str, h: HostResultOut) -> HostResult:
    return HostResult(
        run_id=run_id,
        host=h.host,
        outcome=HostOutcome(h.outcome),
        ok=h.ok,
        changed=h.changed,
        failures=h.failures,
        unreachable=h.unreachable,
        release_before=h.release_before,
        release_after=h.release_after,
        started_at=h.started_at,
        finished_at=h.finished_at,
        reason=h.reason,
    )


def event_record(e: RunEventOut) -> RunEvent:
    return RunEvent(
        run_id=e.run_id,
        seq=e.seq,
        event=e.event,
        created_at=e.created_at,
        host=e.host,
        task=e.task,
        data=e.data,
    )


def _seg(value: str) -> str:
    return quote(value, safe="")


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None}


def _parse(model: type[M], response: httpx.Response) -> M:
    return _parse_text(model, response.text, server_label(str(response.url)))


def _parse_text(model: type[M], text: str, label: str) -> M:
    try:
        return model.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        # Never echo the body: it is the server's, and may be long.
        raise OperationFailed(
            f"unexpected answer from {label}: not a {model.__name__} ({type(exc).__name__})"
        ) from None
