"""Render the fleet model as a standard Ansible inventory (the YAML/JSON ``all`` layout).

Groups: ``member_<slug>`` and ``app_<slug>`` (dashes become underscores, which Ansible
requires of group names). Host vars carry the connection settings, the explicit
interpreter (discovery picks a broken shim on these machines), the host's root prefix and
the instances it runs.

SSH hosts are always connected to with host key checking on, against the host's own
known_hosts file. What Ansible reads is written by ``unsafe_yaml``: every string value is
tagged ``!unsafe``, so a "{{ ... }}" that slipped into the data stays text and is never
templated on the controller.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
        # Both the stock ssh plugin and mitogen read this var before any environment
        # default (ansible-runner's is False); mitogen then passes StrictHostKeyChecking=yes.
        out["ansible_host_key_checking"] = True
        out["ansible_ssh_common_args"] = ssh_common_args(host)
    if host.become:
        out["ansible_become"] = True
    return out


def ssh_common_args(host: Host) -> str:
    """Check the host's key against its own known_hosts file only, and never add to it."""
    if host.known_hosts_file is None:  # the model refuses this; never fall back to trust
        raise ValueError(f"host {host.name}: an ssh host needs a known_hosts_file")
    return shlex.join(
        [
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={host.known_hosts_file}",
            "-o",
            "UpdateHostKeys=no",
        ]
    )


class _Unsafe(str):
    """A string Ansible must take as data, never as a template."""


class _UnsafeDumper(yaml.SafeDumper):
    pass


_UnsafeDumper.add_representer(
    _Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value))
)


def _tag(value: Any) -> Any:
    # Only values: keys are host, group and variable names, all matched by strict patterns.
    if isinstance(value, str):
        return _Unsafe(value)
    if isinstance(value, Mapping):
        return {str(k): _tag(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tag(v) for v in value]
    return value


def unsafe_yaml(data: Mapping[str, Any]) -> str:
    """``data`` as YAML for Ansible with every string value tagged ``!unsafe``."""
    return yaml.dump(_tag(data), Dumper=_UnsafeDumper, sort_keys=False, allow_unicode=True)


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
