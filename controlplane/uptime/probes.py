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
    """Health and live version of one instance; never raises for a down instance."""
    started = time.monotonic()
    version: str | None = None
    try:
        status, _ = _get(instance.address, instance.port, instance.health_path, timeout)
        healthy = status == 200
        error = None if healthy else f"{instance.health_path} answered {status}"
        v_status, body = _get(instance.address, instance.port, "/version", timeout)
        if v_status == 200:
            payload = json.loads(body)
            if isinstance(payload, dict) and isinstance(payload.get("version"), str):
                version = payload["version"]
    except (OSError, http.client.HTTPException, ValueError) as exc:
        healthy = False
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return ProbeResult(
        member=instance.member,
        app=instance.app,
        host=instance.host,
        address=instance.address,
        port=instance.port,
        healthy=healthy,
        version=version,
        latency_seconds=time.monotonic() - started,
        error=error,
        at=at,
    )


def probe_all(
    instances: list[PlacedInstance], timeout: float = 2.0, at: datetime | None = None
) -> list[ProbeResult]:
    if not instances:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(instances))) as pool:
        return list(pool.map(lambda i: probe(i, timeout, at), instances))
