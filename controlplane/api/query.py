"""Unknown or repeated query parameters are bad input, as unknown body keys are.

A misspelt filter (``/runs?membr=utrecht``) must not quietly answer with every member's
runs, and ``?member=a&member=b`` must not quietly mean ``b``. Each ``/api/v1`` router
therefore refuses, before the operation runs, a query parameter its operation does not
declare and a repeated one that takes a single value: 422 naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import UnionType
from typing import Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from controlplane.errors import InvalidInput

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}")
_MANY = (list, tuple, set, frozenset)


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _repeatable(annotation: object) -> bool:
    origin = get_origin(annotation)
    if origin in _MANY:
        return True
    if origin is Union or origin is UnionType:
        return any(_repeatable(a) for a in get_args(annotation))
    return False


def declared_query(route: APIRoute) -> dict[str, bool]:
    """Each query parameter ``route`` takes (through its dependencies), and whether it may
    be repeated."""
    return {
        p.alias: _repeatable(p.field_info.annotation)
        for d in _dependants(route.dependant)
        for p in d.query_params
    }


def known_query_only(request: Request) -> None:
    """Router dependency: refuse undeclared query parameters and repeated single ones."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = declared_query(route)
    for name in request.query_params:
        if name not in declared:
            if _NAME.fullmatch(name):
                raise InvalidInput(f"{name}: not a parameter of this operation")
            raise InvalidInput(f"query: unknown parameter {name[:40]!r}")
        if not declared[name] and len(request.query_params.getlist(name)) > 1:
            raise InvalidInput(f"{name}: given more than once")
