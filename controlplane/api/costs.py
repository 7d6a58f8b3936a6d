"""``/api/v1/costs``: a month's allocation between members, and the board's report.

``GET /costs/{period}`` is the model ``controlplane costs allocate --json`` prints (a month,
``2026-10``). ``GET /costs/{period}/report?format=html|pdf|csv`` is the report for a month
or a quarter (``2026-Q4``) as a file to save.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Response

from controlplane.access.policy import Action, Principal
from controlplane.api.auth import context, requires
from controlplane.api.errors import ERROR_RESPONSES
from controlplane.api.query import known_query_only
from controlplane.app import Context
from controlplane.costs import operations as ops
from controlplane.schemas.costs import AllocationOut

router = APIRouter(
    prefix="/api/v1",
    tags=["costs"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(known_query_only)],
)

Ctx = Annotated[Context, Depends(context)]
Reader = Annotated[Principal, requires(Action.COSTS_READ)]


@router.get("/costs/{period}", summary="A month's cost pools split between members")
def allocation(
    period: Annotated[str, Path(max_length=16, description="a month, e.g. 2026-10")],
    principal: Reader,
    ctx: Ctx,
) -> AllocationOut:
    return ops.allocate(ctx, principal, period)


@router.get(
    "/costs/{period}/report",
    summary="The board's report for a month or quarter as HTML, PDF or CSV",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string"}},
            }
        }
    },
)
def report(
    period: Annotated[
        str, Path(max_length=16, description="a month (2026-10) or a quarter (2026-Q4)")
    ],
    principal: Reader,
    ctx: Ctx,
    format: Annotated[
        Literal["html", "pdf", "csv"], Query(description="the file's format")
    ] = "html",
) -> Response:
    rendered = ops.report(ctx, principal, period, format)
    return Response(
        rendered.content,
        media_type=rendered.content_type,
        headers={"Content-Disposition": attachment(rendered.filename)},
    )


def attachment(filename: str) -> str:
    """A ``Content-Disposition`` for ``filename``, which may hold non-ASCII (a quarter's
    title has an en dash): an ASCII fallback, and the exact name per RFC 6266 / 5987."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "-" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
