"""The OpenAPI document of the API, as checked in at ``docs/openapi.json``.

Regenerate after changing a route or a response model::

    python -m controlplane.api.openapi > docs/openapi.json

A test compares the served document with the checked-in one, so they cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from controlplane.api.system import Readiness


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document ``app`` serves."""
    return app.openapi()


def render(doc: dict[str, Any]) -> str:
    """The checked-in form: sorted keys, two-space indent, trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def reference_app() -> FastAPI:
    """The app with default settings; building it reads no database and no fleet."""
    from controlplane.api.app import create_app
    from controlplane.app import Context
    from controlplane.settings import Settings

    def never() -> Readiness:
        raise RuntimeError("the reference app is not served")

    # Settings() without the environment: the document must not depend on this machine.
    settings = Settings.model_construct()
    return create_app(Context(settings), registry=CollectorRegistry(), readiness=never)


def main() -> None:
    sys.stdout.write(render(document(reference_app())))


if __name__ == "__main__":
    main()
