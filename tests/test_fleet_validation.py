"""`controlplane validate`: shipped inventories pass; each kind of bad input: one line, exit 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.cli import run
from tests.conftest import LAB, ROOT


@pytest.fixture
def lab_copy(tmp_path: Path) -> Path:
    target = tmp_path / "fleet"
    shutil.copytree(LAB, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def validate(fleet: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run(["validate", "--fleet", str(fleet)])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("name", ["lab", "rotterdam"])
def test_shipped_inventories_are_valid(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["validate", "--fleet", str(ROOT / "controlplane" / "inventories" / name), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert '"status": "valid"' in out


# Each case: (file, old text, new text, the words the one-line error must contain).
BAD_INPUT = {
    "yaml-syntax": ("hosts.yml", "  - name: lab-2\n", "  - name: [lab-2\n", ["hosts.yml", "line"]),
    "unknown-field-host": (
        "hosts.yml",
        "    connection: local\n",
        "    connection: local\n    colour: blue\n",
        ["hosts.yml", "hosts[lab-1].colour", "unknown field"],
    ),
    "unknown-field-stack": (
        "stacks.yml",
        '      version: "2.1.0"\n      instances:\n        - {host: lab-2, port: 8204}',
        '      version: "2.1.0"\n      replicas: 3\n'
        "      instances:\n        - {host: lab-2, port: 8204}",
        ["stacks.yml", "stacks.utrecht.reintegratie.replicas", "unknown field"],
    ),
    "unknown-member": (
        "stacks.yml",
        "  utrecht:\n",
        "  leiden:\n",
        ["stacks.yml", "stacks.leiden", "unknown member"],
    ),
    "unknown-app": (
        "stacks.yml",
        "  utrecht:\n    uitkering:\n",
        "  utrecht:\n    schuldhulp:\n",
        ["stacks.yml", "stacks.utrecht.schuldhulp", "unknown app"],
    ),
    "unknown-host": (
        "stacks.yml",
        "{host: lab-2, port: 8204}",
        "{host: lab-9, port: 8204}",
        ["stacks.yml", "stacks.utrecht.reintegratie.instances[0].host", "unknown host"],
    ),
    "duplicate-member-slug": (
        "members.yml",
        "  - slug: utrecht\n",
        "  - slug: amsterdam\n",
        ["members.yml", "members[3].slug", "duplicate slug 'amsterdam'"],
    ),
    "duplicate-host-name": (
        "hosts.yml",
        "  - name: lab-4\n",
        "  - name: lab-3\n",
        ["hosts.yml", "hosts[3].name", "duplicate name 'lab-3'"],
    ),
    "duplicate-yaml-key": (
        "stacks.yml",
        "  utrecht:\n",
        "  rotterdam:\n",
        ["stacks.yml", "duplicate key 'rotterdam'"],
    ),
    "port-clash": (
        "stacks.yml",
        "{host: lab-2, port: 8204}",
        "{host: lab-2, port: 8101}",
        [
            "stacks.yml",
            "stacks.utrecht.reintegratie.instances[0].port",
            "already used by amsterdam/uitkering",
        ],
    ),
    "over-capacity": (
        "hosts.yml",
        "    root: hosts/lab-2\n    capacity: {vcpu: 8,",
        "    root: hosts/lab-2\n    capacity: {vcpu: 2,",
        ["hosts.yml", "hosts[lab-2].capacity.vcpu", "reserve 4"],
    ),
    "version-shell": (
        "stacks.yml",
        '      version: "2.1.0"\n      instances:\n        - {host: lab-2, port: 8204}',
        '      version: "2.1.0; rm -rf /"\n      instances:\n        - {host: lab-2, port: 8204}',
        ["stacks.yml", "stacks.utrecht.reintegratie.version", "not a plain version"],
    ),
    "version-substitution": (
        "apps.yml",
        '      - version: "2.2.0"',
        '      - version: "$(reboot)"',
        ["apps.yml", "apps[reintegratie].versions[2].version", "not a plain version"],
    ),
    "version-unquoted-float": (
        "apps.yml",
        '      - version: "2.2.0"',
        "      - version: 2.2",
        ["apps.yml", "apps[reintegratie].versions[2].version", "quoted string"],
    ),
    "version-not-in-catalogue": (
        "stacks.yml",
        '      version: "2.1.0"\n      instances:\n        - {host: lab-2, port: 8204}',
        '      version: "9.9.9"\n      instances:\n        - {host: lab-2, port: 8204}',
        ["stacks.yml", "stacks.utrecht.reintegratie.version", "not in the reintegratie catalogue"],
    ),
    "address-invalid-ip": (
        "hosts.yml",
        "address: 127.0.10.3",
        "address: 127.0.10.300",
        ["hosts.yml", "hosts[lab-3].address", "not an IP address or host name"],
    ),
    "address-with-space": (
        "hosts.yml",
        "address: 127.0.10.3",
        "address: 'db host'",
        ["hosts.yml", "hosts[lab-3].address", "not an IP address or host name"],
    ),
    "capacity-zero": (
        "hosts.yml",
        "    root: hosts/lab-4\n    capacity: {vcpu: 8, ram_gib: 32,",
        "    root: hosts/lab-4\n    capacity: {vcpu: 8, ram_gib: 0,",
        ["hosts.yml", "hosts[lab-4].capacity.ram_gib", "greater than 0"],
    ),
    "capacity-negative": (
        "hosts.yml",
        "    root: hosts/lab-4\n    capacity: {vcpu: 8,",
        "    root: hosts/lab-4\n    capacity: {vcpu: -8,",
        ["hosts.yml", "hosts[lab-4].capacity.vcpu", "greater than 0"],
    ),
    "maintenance-unknown-window": (
        "maintenance.yml",
        "window: patch-lab-2,",
        "window: patch-lab-9,",
        ["maintenance.yml", "jobs[patch-lab-2].window", "unknown window 'patch-lab-9'"],
    ),
    "maintenance-freeze-as-window": (
        "maintenance.yml",
        "window: patch-lab-2,",
        "window: payment-run-utrecht,",
        ["maintenance.yml", "jobs[patch-lab-2].window", "is a freeze"],
    ),
    "maintenance-bad-cron": (
        "maintenance.yml",
        'cron: "15 3 * * *"',
        'cron: "15 27 * * *"',
        ["maintenance.yml", "jobs[drift-nightly].cron", "invalid cron"],
    ),
    "maintenance-bad-serial": (
        "maintenance.yml",
        'window: patch-lab-3, serial: "1"',
        'window: patch-lab-3, serial: "0"',
        ["maintenance.yml", "jobs[patch-lab-3]", "batch size"],
    ),
    "slo-out-of-range": (
        "members.yml",
        "    slo: 0.99\n",
        "    slo: 99\n",
        ["members.yml", "members[utrecht].slo", "less than 1"],
    ),
}


# Every free-text field reaches an Ansible inventory, where "{{ }}" would be templated on
# the controller: each is held to a tight pattern, matched against the whole value.
TEMPLATE = "\"{{ lookup('pipe', 'touch /tmp/cp-pwned') }}\""
LAB4_LOCAL = "    address: 127.0.10.4\n    connection: local\n"
BAD_INPUT.update(
    {
        "template-datacenter-name": (
            "datacenter.yml",
            "\nname: lab\n",
            f"\nname: {TEMPLATE}\n",
            ["datacenter.yml", "name: ", "not a plain name"],
        ),
        "template-timezone": (
            "datacenter.yml",
            "timezone: Europe/Amsterdam",
            f"timezone: {TEMPLATE}",
            ["datacenter.yml", "timezone", "unknown time zone"],
        ),
        "template-member-name": (
            "members.yml",
            "    name: Gemeente Utrecht, Werk en Inkomen\n",
            f"    name: {TEMPLATE}\n",
            ["members.yml", "members[utrecht].name", "should match pattern"],
        ),
        "template-app-name": (
            "apps.yml",
            "    name: Uitkeringsadministratie",
            "    name: Uitkering {{ 7 * 7 }}",
            ["apps.yml", "apps[uitkering].name", "should match pattern"],
        ),
        "template-version-notes": (
            "apps.yml",
            "        notes: health check fails after start;",
            "        notes: x {% raw %} fails after start;",
            ["apps.yml", "apps[uitkering].versions[2].notes", "should match pattern"],
        ),
        "template-host-root": (
            "hosts.yml",
            "    root: hosts/lab-1\n",
            f"    root: {TEMPLATE}\n",
            ["hosts.yml", "hosts[lab-1].root", "should match pattern"],
        ),
        "template-host-user": (
            "hosts.yml",
            LAB4_LOCAL,
            LAB4_LOCAL + '    user: "{{ x }}"\n',
            ["hosts.yml", "hosts[lab-4].user", "should match pattern"],
        ),
        "template-interpreter": (
            "hosts.yml",
            LAB4_LOCAL,
            LAB4_LOCAL + f"    python_interpreter: {TEMPLATE}\n",
            ["hosts.yml", "hosts[lab-4].python_interpreter", "should match pattern"],
        ),
        "template-private-key-file": (
            "hosts.yml",
            LAB4_LOCAL,
            LAB4_LOCAL + f"    private_key_file: {TEMPLATE}\n",
            ["hosts.yml", "hosts[lab-4].private_key_file", "should match pattern"],
        ),
        "template-known-hosts-file": (
            "hosts.yml",
            LAB4_LOCAL,
            LAB4_LOCAL + f"    known_hosts_file: {TEMPLATE}\n",
            ["hosts.yml", "hosts[lab-4].known_hosts_file", "should match pattern"],
        ),
        "slug-with-trailing-newline": (
            "members.yml",
            "  - slug: utrecht\n",
            '  - slug: "utrecht\\n"\n',
            ["members.yml", "members[3].slug", "should match pattern"],
        ),
        "version-with-trailing-newline": (
            "apps.yml",
            '      - version: "2.2.0"',
            '      - version: "2.2.0\\n"',
            ["apps.yml", "apps[reintegratie].versions[2].version", "not a plain version"],
        ),
        "health-path-with-trailing-newline": (
            "apps.yml",
            "    health_path: /healthz\n    resources: {vcpu: 1,",
            '    health_path: "/healthz\\n"\n    resources: {vcpu: 1,',
            ["apps.yml", "apps[uitkering].health_path", "not a URL path"],
        ),
        "ssh-host-without-known-hosts": (
            "hosts.yml",
            LAB4_LOCAL,
            "    address: 127.0.10.4\n    connection: ssh\n",
            ["hosts.yml", "hosts[lab-4].known_hosts_file", "known_hosts file holding its host key"],
        ),
        "ssh-host-known-hosts-missing": (
            "hosts.yml",
            LAB4_LOCAL,
            "    address: 127.0.10.4\n    connection: ssh\n    known_hosts_file: nowhere\n",
            ["hosts.yml", "hosts[lab-4].known_hosts_file", "no such file", "nowhere"],
        ),
    }
)


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_exit_2(
    case: str, lab_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file, old, new, words = BAD_INPUT[case]
    edit(lab_copy / file, old, new)
    code, err = validate(lab_copy, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], f"{word!r} missing from {lines[0]!r}"


def test_missing_file_is_named(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (lab_copy / "apps.yml").unlink()
    code, err = validate(lab_copy, capsys)
    assert code == 2
    assert "apps.yml: file is missing" in err


def test_real_process_prints_no_traceback(lab_copy: Path) -> None:
    """The installed console script, not just the in-process entry point."""
    edit(lab_copy / "hosts.yml", "address: 127.0.10.3", "address: 127.0.10.300")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "controlplane"), "validate", "--fleet", str(lab_copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stdout == ""
