"""Round-trip edits of the fleet's YAML: a human's diff shows only the changed lines, an
edit that would make the fleet invalid writes nothing, and every write is atomic."""

from __future__ import annotations

import difflib
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
import yaml

from controlplane.errors import FleetInvalid, InvalidInput, NotFound
from controlplane.fleet import edit as fleet_edit
from controlplane.fleet.edit import editing, set_version, splice, validate_fleet, write_atomic
from tests.conftest import LAB, ROOT

ROTTERDAM = ROOT / "controlplane" / "inventories" / "rotterdam"


def copy_fleet(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def changed_lines(before: str, after: str) -> list[str]:
    """The lines a unified diff shows as removed or added."""
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize("src", [LAB, ROTTERDAM], ids=["lab", "rotterdam"])
def test_setting_a_version_changes_exactly_that_line_of_a_shipped_fleet(
    src: Path, tmp_path: Path
) -> None:
    fleet = copy_fleet(src, tmp_path / "fleet")
    stacks = fleet / "stacks.yml"
    os.chmod(stacks, 0o640)
    before = stacks.read_text()
    others = {k: v for k, v in snapshot(fleet).items() if k != "stacks.yml"}
    app = validate_fleet(fleet).stack_app("utrecht", "reintegratie")
    target = next(
        v.version
        for v in validate_fleet(fleet).app("reintegratie").versions
        if v.version != app.version
    )

    change = set_version(fleet, "utrecht", "reintegratie", target)

    after = stacks.read_text()
    assert (change.before, change.after, change.changed) == (app.version, target, True)
    assert changed_lines(before, after) == [
        f'-      version: "{app.version}"',
        f'+      version: "{target}"',
    ]
    assert stat.S_IMODE(stacks.stat().st_mode) == 0o640
    assert {k: v for k, v in snapshot(fleet).items() if k != "stacks.yml"} == others
    assert validate_fleet(fleet).stack_app("utrecht", "reintegratie").version == target


HAND_WRITTEN = """\
---
# Stacks, hand-kept.   Odd spacing stays.

stacks:    # member -> app
    amsterdam:
        uitkering:
            version: '1.1.0'     # pinned until the payment run is over
            instances:
            -   {host: lab-1, port: 8101}
            - host: lab-2   # second replica
              port: 8101
        reintegratie:
            version: 2.1.0
            instances: [{host: lab-3, port: 8201}]

    utrecht:
        uitkering:
            version: "1.1.0"
            instances:
                - {host: lab-4, port: 8104}
# trailing comment
"""


def test_comments_quoting_and_odd_layout_survive_byte_for_byte(tmp_path: Path) -> None:
    fleet = copy_fleet(LAB, tmp_path / "fleet")
    stacks = fleet / "stacks.yml"
    stacks.write_text(HAND_WRITTEN)

    set_version(fleet, "amsterdam", "uitkering", "1.0.0")  # single-quoted
    set_version(fleet, "amsterdam", "reintegratie", "2.2.0")  # plain
    set_version(fleet, "utrecht", "uitkering", "1.0.0")  # double-quoted

    assert changed_lines(HAND_WRITTEN, stacks.read_text()) == [
        "-            version: '1.1.0'     # pinned until the payment run is over",
        "+            version: '1.0.0'     # pinned until the payment run is over",
        "-            version: 2.1.0",
        "+            version: 2.2.0",
        '-            version: "1.1.0"',
        '+            version: "1.0.0"',
    ]


def test_windows_line_endings_are_kept(tmp_path: Path) -> None:
    fleet = copy_fleet(LAB, tmp_path / "fleet")
    stacks = fleet / "stacks.yml"
    original = stacks.read_bytes()
    stacks.write_bytes(original.replace(b"\n", b"\r\n"))

    set_version(fleet, "den-haag", "uitkering", "1.0.0")

    after = stacks.read_bytes()
    assert after.count(b"\r\n") == original.count(b"\n")
    assert after.replace(b"\r\n", b"\n") == original.replace(
        b'den-haag:\n    uitkering:\n      version: "1.1.0"',
        b'den-haag:\n    uitkering:\n      version: "1.0.0"',
    )


def test_an_edit_the_fleet_would_not_validate_writes_nothing(tmp_path: Path) -> None:
    fleet = copy_fleet(LAB, tmp_path / "fleet")
    before = snapshot(fleet)

    with pytest.raises(FleetInvalid) as caught:
        set_version(fleet, "amsterdam", "uitkering", "9.9.9")
    message = str(caught.value)
    assert message.startswith(f"{fleet}/stacks.yml: stacks.amsterdam.uitkering.version: ")
    assert "9.9.9" in message and "nothing was written" in message
    assert "cp-fleet-edit" not in message  # the scratch copy is never named

    # A change to one file that breaks another (a member the stacks still name).
    with pytest.raises(FleetInvalid, match=r"stacks\.yml: .*utrecht"), editing(fleet) as edit:
        members = edit.doc("members")["members"]
        del members[[m["slug"] for m in members].index("utrecht")]
        edit.doc("stacks")["stacks"]["amsterdam"]["uitkering"]["version"] = "1.0.0"

    # A failure inside the block: nothing is validated or written either.
    with pytest.raises(RuntimeError), editing(fleet) as edit:
        edit.doc("stacks")["stacks"]["amsterdam"]["uitkering"]["version"] = "1.0.0"
        raise RuntimeError("changed my mind")

    assert snapshot(fleet) == before  # no file changed, no temporary file left


def test_bad_names_are_refused_before_anything_is_read_for_writing(tmp_path: Path) -> None:
    fleet = copy_fleet(LAB, tmp_path / "fleet")
    before = snapshot(fleet)
    with pytest.raises(NotFound, match=r"^stacks\.amsterdam\.nope: "):
        set_version(fleet, "amsterdam", "nope", "1.0.0")
    with pytest.raises(NotFound, match=r"^stacks\.nobody\.uitkering: "):
        set_version(fleet, "nobody", "uitkering", "1.0.0")
    with pytest.raises(InvalidInput, match=r"^version: "):
        set_version(fleet, "amsterdam", "uitkering", "1.0.0\n# {{ evil }}")
    with pytest.raises(InvalidInput, match=r"^passwords: not a fleet file"), editing(fleet) as e:
        e.doc("passwords")
    with pytest.raises(FleetInvalid, match="fleet directory does not exist"):
        set_version(tmp_path / "nowhere", "amsterdam", "uitkering", "1.0.0")
    assert snapshot(fleet) == before


def test_setting_the_declared_version_again_leaves_the_file_alone(tmp_path: Path) -> None:
    fleet = copy_fleet(LAB, tmp_path / "fleet")
    stacks = fleet / "stacks.yml"
    inode = stacks.stat().st_ino
    change = set_version(fleet, "amsterdam", "uitkering", "1.1.0")
    assert not change.changed
    assert stacks.stat().st_ino == inode  # not even rewritten


def test_a_member_joining_adds_lines_and_changes_none(tmp_path: Path) -> None:
    """The general API a later "member joins" feature builds on: new entries in three
    files, validated together; the existing lines stay as they were."""
    fleet = copy_fleet(LAB, tmp_path / "fleet")
    (fleet / "costs.yml").unlink()  # its keys would need a share for the new member
    before = snapshot(fleet)

    with editing(fleet) as edit:
        edit.doc("members")["members"].append(
            {
                "slug": "zwolle",
                "name": "Gemeente Zwolle, Sociale Zaken",
                "slo": 0.99,
                "deploy_policy": "avoid-freezes",
            }
        )
        edit.doc("stacks")["stacks"]["zwolle"] = {
            "reintegratie": {
                "version": fleet_edit.same_style(
                    edit.doc("stacks")["stacks"]["utrecht"]["reintegratie"]["version"], "2.1.0"
                ),
                "instances": [{"host": "lab-3", "port": 8205}],
            }
        }
        edit.doc("windows")["windows"].append(
            {
                "name": "payment-run-zwolle",
                "kind": "freeze",
                "scope": {"member": "zwolle"},
                "rrule": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
                "start": "2025-01-01T00:00",
                "duration": "P1D",
            }
        )

    after = snapshot(fleet)
    for name in ("members.yml", "stacks.yml", "windows.yml"):
        removed = [
            line
            for line in changed_lines(before[name].decode(), after[name].decode())
            if line.startswith("-")
        ]
        assert removed == [], name
    stacks_doc = yaml.safe_load(after["stacks.yml"])
    assert stacks_doc["stacks"]["zwolle"] == {
        "reintegratie": {"version": "2.1.0", "instances": [{"host": "lab-3", "port": 8205}]}
    }
    assert '      version: "2.1.0"\n' in after["stacks.yml"].decode().split("zwolle:")[1]
    loaded = validate_fleet(fleet)
    assert loaded.stack_app("zwolle", "reintegratie").instances[0].port == 8205
    assert {
        k: v for k, v in after.items() if k not in {"members.yml", "stacks.yml", "windows.yml"}
    } == {k: v for k, v in before.items() if k not in {"members.yml", "stacks.yml", "windows.yml"}}


def test_two_edits_at_once_both_land(tmp_path: Path) -> None:
    fleet = copy_fleet(LAB, tmp_path / "fleet")
    jobs = [("amsterdam", "uitkering", "1.0.0"), ("rotterdam", "reintegratie", "2.2.0")] * 3
    errors: list[BaseException] = []

    def go(member: str, app: str, version: str) -> None:
        try:
            set_version(fleet, member, app, version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    loaded = validate_fleet(fleet)
    assert loaded.stack_app("amsterdam", "uitkering").version == "1.0.0"
    assert loaded.stack_app("rotterdam", "reintegratie").version == "2.2.0"


def test_an_atomic_write_replaces_the_file_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real.yml"
    real.write_text("a: 1\n")
    os.chmod(real, 0o604)
    link = tmp_path / "link.yml"
    link.symlink_to(real)

    write_atomic(link, "a: 2\n")
    assert link.is_symlink() and real.read_text() == "a: 2\n"  # the link is kept
    assert stat.S_IMODE(real.stat().st_mode) == 0o604

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)  # the rename is the last step
    with pytest.raises(OSError, match="disk full"):
        write_atomic(real, "a: 3\n")
    assert real.read_text() == "a: 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.yml", "real.yml"]


def test_a_splice_carries_a_change_over_or_says_it_cannot() -> None:
    original = "a:\n    - 1\n  # odd\nb: 2\n"
    noop = "a:\n  - 1\n# odd\nb: 2\n"
    assert splice(original, noop, "a:\n  - 1\n# odd\nb: 3\n") == "a:\n    - 1\n  # odd\nb: 3\n"
    assert splice(original, noop, "a:\n  - 1\n# odd\nb: 2\nc: 4\n") == original + "c: 4\n"
    # A change on a line the dumper writes differently cannot be placed: the caller then
    # writes the dumper's text.
    assert splice(original, noop, "a:\n  - 5\n# odd\nb: 2\n") is None
    # An insertion between two lines the original does not have side by side.
    assert splice(original, noop, "a:\n  - 1\n  - 2\n# odd\nb: 2\n") is None
