"""HTTP probes of app instances (``/healthz`` and ``/version``)."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from controlplane.fleet.model import PlacedInstance


@dataclass(frozen=True)
class ProbeResult:
    member: str
    app: str
    host: str
    address: str
    port: int
    healthy: bool
    version: str | None
    latency_seconds: float
    error: str | None
    at: datetime | None = None


@dataclass(frozen=True)
class ProbeSample:
    """A stored probe: what the probe found, when, and whether a maintenance window covered
    the instance then (such probes count neither as up nor as down for the SLA)."""

    member: str
    app: str
    host: str
    port: int
    at: datetime
    healthy: bool
    in_window: bool
    latency_seconds: float
    version: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("a probe sample's time must be timezone-aware (UTC)")
        if self.latency_seconds < 0:
            raise ValueError("a probe's latency cannot be negative")

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.member, self.app, self.host, self.port)

    @classmethod
    def of(cls, result: ProbeResult, at: datetime, in_window: bool) -> ProbeSample:
        return cls(
            member=result.member,
            app=result.app,
            host=result.host,
            port=result.port,
            at=result.at or at,
            healthy=result.healthy,
            in_window=in_window,
            latency_seconds=max(0.0, result.latency_seconds),
            version=result.version,
            error=None if result.error is None else result.error[:300],
        )


def _get(address: str, port: int, path: str, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "controlplane-probe"})
        resp = conn.getresponse()
        return resp.status, resp.read(65536)
    finally:
        conn.close()


def probe(
    instance: PlacedInstance, timeout: float = 2.0, at: datetime | None = None
) -> ProbeResult:
    """Health and live version of one instance; never raises for a down instance.

    The health check alone decides up or down, and ``latency_seconds`` is its duration;
    ``/version`` is asked afterwards, best effort.
    """
    started = time.monotonic()
    version: str | None = None
    error: str | None
    try:
        status, _ = _get(instance.address, instance.port, instance.health_path, timeout)
    except (OSError, http.client.HTTPException) as exc:
        healthy, error = False, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        latency = time.monotonic() - started
    else:
        latency = time.monotonic() - started
        healthy = status == 200
        error = None if healthy else f"{instance.health_path} answered {status}"
        try:
            v_status, body = _get(instance.address, instance.port, "/version", timeout)
            payload = json.loads(body) if v_status == 200 else None
            if isinstance(payload, dict) and isinstance(payload.get("version"), str):
                version = payload["version"]
        except (OSError, http.client.HTTPException, ValueError):
            pass  # informative only: an instance that answers its health check is up
    return ProbeResult(
        member=instance.member,
        app=instance.app,
        host=instance.host,
        address=instance.address,
        port=instance.port,
        healthy=healthy,
        version=version,
        latency_seconds=latency,
        error=error,
        at=at,
    )


def probe_all(
    instances: list[PlacedInstance],
    timeout: float = 2.0,
    at: datetime | None = None,
    workers: int = 16,
) -> list[ProbeResult]:
    """Probe every instance concurrently (``workers`` at a time), in the given order."""
    if not instances:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(instances)))) as pool:
        return list(pool.map(lambda i: probe(i, timeout, at), instances))
