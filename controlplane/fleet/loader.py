"""Load a fleet directory of human-edited YAML into the validated ``Fleet`` model.

Every problem becomes one ``FleetInvalid`` line naming the file and the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import TypeAdapter, ValidationError

from controlplane.errors import FleetInvalid
from controlplane.fleet.model import (
    App,
    Fleet,
    Host,
    Member,
    Stack,
    StackApp,
)
from controlplane.fleet.patterns import PATH_RE, check_datacenter

FILES = ("datacenter", "members", "hosts", "apps", "stacks")
DATACENTER_KEYS = {"name", "timezone"}

R = TypeVar("R")
_LABEL_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of silently keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            line = key_node.start_mark.line + 1
            raise FleetInvalid(f"line {line}", f"duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def read_yaml(path: Path) -> Any:
    """Parse one YAML file; syntax errors and duplicate keys become ``FleetInvalid``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FleetInvalid("", "file is missing", str(path)) from None
    except OSError as exc:
        raise FleetInvalid("", f"cannot read: {exc.strerror}", str(path)) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except FleetInvalid as exc:
        raise exc.in_file(str(path)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "syntax"
        raise FleetInvalid(where, f"YAML syntax error: {exc.problem}", str(path)) from None
    except yaml.YAMLError as exc:
        raise FleetInvalid("", f"YAML error: {exc}", str(path)) from None


def _path(prefix: str, loc: tuple[int | str, ...], raw: Any) -> str:
    """Render a pydantic location, naming list items by their slug or name when they have one."""
    out = prefix
    node = raw
    for part in loc:
        if isinstance(part, int):
            label: str | int = part
            if isinstance(node, list) and 0 <= part < len(node):
                node = node[part]
                if isinstance(node, dict):
                    named = node.get("slug", node.get("name"))
                    # A name that is itself the problem (a newline, braces) is shown by index.
                    if isinstance(named, str) and _LABEL_RE.fullmatch(named):
                        label = named
            out += f"[{label}]"
        else:
            node = node.get(part) if isinstance(node, dict) else None
            out += f".{part}" if out else str(part)
    return out


def _explain(err: dict[str, Any]) -> str:
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return "unknown field"
    if err["type"] in ("missing", "missing_argument"):
        return "required field is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    value = err.get("input")
    if err["type"].startswith(("string_", "int_", "decimal_", "float_", "greater", "less")):
        msg += f" (got {value!r})"
    return msg


def validate_as(kind: type[R], raw: Any, prefix: str) -> R:
    """Validate ``raw`` as ``kind`` and report the first problem as one line."""
    try:
        return TypeAdapter(kind).validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        # The unknown-field location is the field itself; missing ones likewise.
        raise FleetInvalid(_path(prefix, err["loc"], raw), _explain(dict(err))) from None


def _section(doc: Any, key: str, kind: type, file: str) -> Any:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise FleetInvalid("", "must be a mapping at the top level", file)
    unknown = set(doc) - {key}
    if unknown:
        raise FleetInvalid(str(sorted(unknown)[0]), "unknown field", file)
    items = doc.get(key, [])
    if not isinstance(items, list):
        raise FleetInvalid(key, "must be a list", file)
    try:
        return validate_as(tuple[kind, ...], items, key)  # type: ignore[valid-type]
    except FleetInvalid as exc:
        raise exc.in_file(file) from None


def _stacks(doc: Any, file: str) -> tuple[Stack, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, dict) or set(doc) - {"stacks"}:
        raise FleetInvalid("", "must be a mapping with one key, stacks", file)
    raw = doc.get("stacks") or {}
    if not isinstance(raw, dict):
        raise FleetInvalid("stacks", "must map member slugs to their apps", file)
    stacks: list[Stack] = []
    for member, apps in raw.items():
        where = f"stacks.{member}"
        if not isinstance(apps, dict):
            raise FleetInvalid(where, "must map app slugs to a version and instances", file)
        parsed: list[StackApp] = []
        for app, body in apps.items():
            if not isinstance(body, dict):
                raise FleetInvalid(f"{where}.{app}", "must be a mapping", file)
            if "app" in body:
                raise FleetInvalid(f"{where}.{app}.app", "unknown field", file)
            try:
                parsed.append(validate_as(StackApp, {"app": app, **body}, f"{where}.{app}"))
            except FleetInvalid as exc:
                # A bad app key shows up as ".app"; name it as the key it was written as.
                raise exc.in_file(file) from None
        try:
            stacks.append(validate_as(Stack, {"member": member, "apps": parsed}, where))
        except FleetInvalid as exc:
            raise exc.in_file(file) from None
    return tuple(stacks)


def load_fleet(directory: Path, on_file: Callable[[Path], None] | None = None) -> Fleet:
    """Load and cross-check the fleet in ``directory``."""
    if not directory.is_dir():
        raise FleetInvalid("", "fleet directory does not exist", str(directory))
    files = {name: directory / f"{name}.yml" for name in FILES}
    docs = {name: read_yaml(path) for name, path in files.items()}
    if on_file:
        for path in files.values():
            on_file(path)

    dc = docs["datacenter"] or {}
    dc_file = str(files["datacenter"])
    if not isinstance(dc, dict):
        raise FleetInvalid("", "must be a mapping", dc_file)
    for key in dc:
        if key not in DATACENTER_KEYS:
            raise FleetInvalid(str(key), "unknown field", dc_file)
    name = dc.get("name")
    timezone = dc.get("timezone", "Europe/Amsterdam")
    try:
        name = check_datacenter(name, timezone)
    except FleetInvalid as exc:
        raise exc.in_file(dc_file) from None
    _check_zone(timezone, dc_file)

    members = _section(docs["members"], "members", Member, str(files["members"]))
    hosts_file = str(files["hosts"])
    hosts = tuple(
        _host_files(h, directory, hosts_file)
        for h in _section(docs["hosts"], "hosts", Host, hosts_file)
    )
    apps = _section(docs["apps"], "apps", App, str(files["apps"]))
    stacks = _stacks(docs["stacks"], str(files["stacks"]))
    try:
        return Fleet(
            name=name, members=members, hosts=hosts, apps=apps, stacks=stacks, timezone=timezone
        )
    except FleetInvalid as exc:
        section = exc.field.split(".")[0].split("[")[0]
        raise exc.in_file(str(files.get(section, directory))) from None


def _host_files(host: Host, directory: Path, file: str) -> Host:
    """Key and known_hosts paths written relative to the fleet directory, made absolute; the
    known_hosts file must exist, or every connection to the host would be refused."""
    key = _beside(host.private_key_file, directory)
    known = _beside(host.known_hosts_file, directory)
    for field, value in (("private_key_file", key), ("known_hosts_file", known)):
        if value is not None and not PATH_RE.fullmatch(value):
            problem = f"{value!r} (relative to the fleet directory) is not a plain path"
            raise FleetInvalid(f"hosts[{host.name}].{field}", problem, file)
    if known is not None and not Path(known).is_file():
        raise FleetInvalid(f"hosts[{host.name}].known_hosts_file", f"no such file {known}", file)
    if (key, known) == (host.private_key_file, host.known_hosts_file):
        return host
    return replace(host, private_key_file=key, known_hosts_file=known)


def _beside(path: str | None, directory: Path) -> str | None:
    if path is None or Path(path).is_absolute():
        return path
    return str((directory / path).resolve())


def _check_zone(value: Any, file: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise FleetInvalid("timezone", f"unknown time zone {value!r}", file) from None
