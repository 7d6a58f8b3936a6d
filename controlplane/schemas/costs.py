"""A month's cost allocation as the edges show it; money as exact decimal strings."""

from __future__ import annotations

from pydantic import BaseModel


class PoolShareOut(BaseModel):
    pool: str
    name: str
    key: str
    idle: str
    amount: str
    shares: dict[str, str]
    cooperative: str


class BillLineOut(BaseModel):
    pool: str
    label: str
    amount: str


class MemberBillOut(BaseModel):
    member: str
    name: str
    lines: list[BillLineOut]
    gross: str
    credits: str
    total: str
    standalone: str
    market: str
    saving_standalone: str
    saving_market: str
    caseload: int | None
    reserved_hours: dict[str, str]


class AllocationOut(BaseModel):
    """Every pool split between members, each member's bill and what sharing saved."""

    period: str
    start: str
    end: str
    hours: str
    currency: str
    total: str
    cooperative: str
    credits: str
    pools: list[PoolShareOut]
    members: list[MemberBillOut]
