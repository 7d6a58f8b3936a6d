"""``GET /api/v1/runs/{run_id}/events``: a run's events as a server-sent event stream.

Each event is sent as ``id: <seq>``, ``event: <ansible event name>`` and
``data: <RunEventOut JSON>``, live while the run goes and replayed when it has finished. The
stream ends with ``event: end`` whose data is the final run (as ``GET /runs/{run_id}``
shows it). A client that reconnects sends ``Last-Event-ID`` (or ``after``) and gets only
the events after it. A ``: ping`` comment goes out every 15 s while nothing else does, so
proxies keep the connection open.

The stream polls the store: each poll borrows a connection in a worker thread and gives it
back before sleeping, so a slow follower holds no database connection and never blocks the
event loop. When the client goes away the response is cancelled, and the generator with it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from controlplane.access.policy import Action, Principal
from controlplane.api.auth import context, requires
from controlplane.api.errors import ERROR_RESPONSES
from controlplane.api.query import known_query_only
from controlplane.api.runs import RunId
from controlplane.app import Context
from controlplane.deploy.history import RECOVER_EVERY_SECONDS, detail, visible_run
from controlplane.deploy.model import Run, RunEvent
from controlplane.deploy.operations import recover_runs
from controlplane.errors import InvalidInput
from controlplane.schemas.runs import RunDetailOut, RunEventOut

router = APIRouter(
    prefix="/api/v1",
    tags=["runs"],
    dependencies=[Depends(known_query_only)],
)

# Errors are JSON even here: FastAPI would otherwise document them as text/event-stream.
_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}
JSON_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": spec["description"],
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    }
    for status, spec in ERROR_RESPONSES.items()
}

Ctx = Annotated[Context, Depends(context)]

POLL_SECONDS = 0.25
# Enough events per poll to replay a long run quickly without one huge read.
BATCH = 500


def followed_run(
    run_id: RunId, principal: Annotated[Principal, requires(Action.RUNS_READ)], ctx: Ctx
) -> Run:
    """The run to follow, checked before the stream starts: an unknown or another member's
    run is a plain 404, not a stream that breaks off."""
    return visible_run(ctx, principal, run_id, Action.RUNS_READ)


def resume_after(
    after: Annotated[
        int | None, Query(ge=-1, description="send only events with a higher seq")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=20,
            description="the id of the last event received (sent by EventSource on reconnect)",
        ),
    ] = None,
) -> int:
    """The seq to resume after; a reconnecting client's ``Last-Event-ID`` wins."""
    if last_event_id is not None and last_event_id.strip():
        try:
            seq = int(last_event_id)
        except ValueError:
            raise InvalidInput("Last-Event-ID: must be the id of an event (an integer)") from None
        if seq < -1:
            raise InvalidInput("Last-Event-ID: must be -1 or more")
        return seq
    return -1 if after is None else after


def _poll(ctx: Context, run_id: str, after_seq: int) -> tuple[bool, list[RunEvent]]:
    # Status first: events written before it finished are then all in the read that follows.
    finished = ctx.runs.get(run_id).status.finished
    return finished, ctx.runs.events(run_id, after_seq=after_seq, limit=BATCH)


def _final(ctx: Context, run_id: str) -> RunDetailOut:
    return detail(ctx, ctx.runs.get(run_id))


def _sse(event: RunEvent) -> ServerSentEvent:
    return ServerSentEvent(id=str(event.seq), event=event.event, data=RunEventOut.of(event))


@router.get(
    "/runs/{run_id}/events",
    response_class=EventSourceResponse,
    responses=JSON_ERRORS,
    summary="A run's events as server-sent events, live, ending with `event: end`",
)
async def run_events(
    run: Annotated[Run, Depends(followed_run)],
    after: Annotated[int, Depends(resume_after)],
    ctx: Ctx,
) -> AsyncIterator[ServerSentEvent]:
    seq = after
    checked = time.monotonic()
    while True:
        finished, events = await anyio.to_thread.run_sync(_poll, ctx, run.id, seq)
        for event in events:
            seq = event.seq
            yield _sse(event)
        if len(events) == BATCH:
            continue  # more to replay before judging the end
        if finished:
            yield ServerSentEvent(
                event="end", data=await anyio.to_thread.run_sync(_final, ctx, run.id)
            )
            return
        if time.monotonic() - checked >= RECOVER_EVERY_SECONDS:
            # A run whose executor died must end as interrupted, not be followed forever.
            await anyio.to_thread.run_sync(recover_runs, ctx)
            checked = time.monotonic()
        await anyio.sleep(POLL_SECONDS)
