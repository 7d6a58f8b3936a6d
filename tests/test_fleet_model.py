"""Pure fleet model: reservations, capacity, version rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from controlplane.errors import AppNotFound, MemberNotFound, VersionNotFound
from controlplane.fleet.capacity import host_usage
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import check_version
from tests.conftest import LAB


@pytest.mark.parametrize("good", ["1.0", "1.2.3", "10.20.30.40", "2.2.0-rc1", "3.0.0-beta.2"])
def test_plain_versions_accepted(good: str) -> None:
    assert check_version(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "1",
        "v1.2.3",
        "1.2.3 ",
        "1.2.3\n",
        "1.2.3;id",
        "$(id)",
        "`id`",
        "1.2.3|x",
        "../1.2",
        "1.2.3-",
        "1..2",
        "",
    ],
)
def test_anything_that_could_reach_a_shell_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        check_version(bad)


def test_reservations_use_stack_override_else_catalogue() -> None:
    fleet = load_fleet(LAB)
    rotterdam = fleet.stack_app("rotterdam", "uitkering")
    amsterdam = fleet.stack_app("amsterdam", "uitkering")
    assert fleet.reservation(rotterdam).vcpu == Decimal(2)
    assert fleet.reservation(amsterdam).vcpu == Decimal(1)
    usage = {u.host: u for u in host_usage(fleet)}
    # lab-3: amsterdam reintegratie 0.5 + rotterdam uitkering 2 + den-haag uitkering 1
    assert usage["lab-3"].reserved.vcpu == Decimal("3.5")
    assert usage["lab-3"].ratio("vcpu") == Decimal("3.5") / 8
    assert usage["lab-3"].free.ram_gib == Decimal(32 - 7)


def test_latest_good_skips_broken_releases() -> None:
    fleet = load_fleet(LAB)
    assert fleet.app("uitkering").latest_good.version == "1.1.0"
    assert fleet.app("uitkering").version("1.2.0").broken
    with pytest.raises(VersionNotFound):
        fleet.app("uitkering").version("9.0.0")


def test_lookups_raise_typed_errors() -> None:
    fleet = load_fleet(LAB)
    with pytest.raises(MemberNotFound):
        fleet.member("leiden")
    with pytest.raises(LookupError):  # every not-found is also a LookupError
        fleet.host("lab-9")
    with pytest.raises(AppNotFound):
        fleet.stack_app("utrecht", "schuldhulp")
