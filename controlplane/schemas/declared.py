"""Declared and live versions as the edges show them: what a deploy left the fleet's
``stacks.yml`` declaring, and the downgrades ``provision`` refuses."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DeclaredOut(BaseModel):
    """After a deploy of a named version: what the fleet's ``stacks.yml`` declares for the
    member's app, and whether this run recorded its version there."""

    file: str = Field(description="the fleet's stacks.yml")
    declared: str | None = Field(description="the version the fleet declares now")
    deployed: str = Field(description="the version this run deploys")
    record: bool = Field(description="the run was asked to record its version")
    recorded: bool = Field(description="stacks.yml declares this run's version, as asked")
    pending: bool = Field(
        default=False, description="the run was asked to record and has not got to it yet"
    )
    error: str | None = Field(default=None, description="why asking to record did not record")
    note: str = Field(description="one line for a human")


class StackPlanOut(BaseModel):
    """What ``provision`` does with one member's app: ``up-to-date`` (nothing runs),
    ``install`` (nothing answers yet), ``deploy``, ``downgrade`` (forced back to the
    declared version) or ``refused`` (a live release is newer than the declared one)."""

    member: str
    app: str
    declared: str
    live: list[str] = Field(description="versions the instances answer with")
    action: str
    note: str | None = None


class ProvisionPlanOut(BaseModel):
    """``provision --plan``: what provisioning would do, from probing every instance."""

    stacks: list[StackPlanOut]
