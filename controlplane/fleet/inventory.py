"""Render the fleet model as a standard Ansible inventory (the YAML/JSON ``all`` layout).

Groups: ``member_<slug>`` and ``app_<slug>`` (dashes become underscores, which Ansible
requires of group names). Host vars carry the connection settings, the explicit
interpreter (discovery picks a broken shim on these machines), the host's root prefix and
the instances it runs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlplane.fleet.model import ConnectionKind, Fleet, Host


@dataclass(frozen=True)
class RenderContext:
    """What the pure renderer needs from the outside world."""

    data_dir: Path
    local_python: str
    remote_python: str = "/usr/bin/python3"


def group_name(kind: str, slug: str) -> str:
    return f"{kind}_{slug.replace('-', '_')}"


def host_root(host: Host, data_dir: Path) -> str:
    """The directory every path on this host is placed under ("/" in production)."""
    if host.root is None:
        return "/"
    root = Path(host.root)
    return str(root if root.is_absolute() else (data_dir / root).resolve())


def host_vars(fleet: Fleet, host: Host, ctx: RenderContext) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ansible_host": host.address,
        "ansible_connection": host.connection.value,
        "cp_root": host_root(host, ctx.data_dir),
        "cp_address": host.address,
        "cp_process_manager": host.process_manager.value,
        "cp_capacity": {k: float(v) for k, v in host.capacity.items()},
        "cp_instances": [
            {"member": i.member, "app": i.app, "version": i.version, "port": i.port}
            for i in fleet.instances()
            if i.host == host.name
        ],
    }
    if host.connection is ConnectionKind.LOCAL:
        out["ansible_python_interpreter"] = host.python_interpreter or ctx.local_python
    else:
        out["ansible_python_interpreter"] = host.python_interpreter or ctx.remote_python
        out["ansible_port"] = host.port
        if host.user:
            out["ansible_user"] = host.user
        if host.private_key_file:
            out["ansible_ssh_private_key_file"] = host.private_key_file
        if host.known_hosts_file:
            out["ansible_ssh_common_args"] = shlex.join(
                [
                    "-o",
                    f"UserKnownHostsFile={host.known_hosts_file}",
                    "-o",
                    "StrictHostKeyChecking=yes",
                ]
            )
    if host.become:
        out["ansible_become"] = True
    return out


def render_inventory(fleet: Fleet, ctx: RenderContext, member: str | None = None) -> dict[str, Any]:
    """The inventory as a dict; ``member`` restricts it to that member's hosts and groups."""
    instances = fleet.instances(member=member)
    if member is not None:
        fleet.member(member)
        wanted = {i.host for i in instances}
        hosts = [h for h in fleet.hosts if h.name in wanted]
    else:
        hosts = list(fleet.hosts)

    children: dict[str, Any] = {}
    for m in fleet.members:
        if member is not None and m.slug != member:
            continue
        names = sorted({i.host for i in instances if i.member == m.slug})
        children[group_name("member", m.slug)] = {
            "hosts": {n: {} for n in names},
            "vars": {"cp_member": m.slug},
        }
    for app in fleet.apps:
        names = sorted({i.host for i in instances if i.app == app.slug})
        if names:
            children[group_name("app", app.slug)] = {"hosts": {n: {} for n in names}}
    return {
        "all": {
            "vars": {"cp_datacenter": fleet.name},
            "hosts": {h.name: host_vars(fleet, h, ctx) for h in hosts},
            "children": children,
        }
    }
