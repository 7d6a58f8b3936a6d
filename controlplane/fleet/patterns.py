"""The patterns every fleet value is held to, and the checks that use them.

Every free-text field ends up in an Ansible inventory or extravar, where "{{ }}" and
"{% %}" would be templated on the controller. These patterns leave no room for braces,
percent or hash signs, or newlines. Python callers use ``fullmatch`` (a "$" alone accepts
a trailing newline); pydantic's regex engine anchors "$" at the very end of the value.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Annotated

from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BeforeValidator, Field, StrictStr

from controlplane.errors import FleetInvalid

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
# Plain release numbers with an optional pre-release tag: digits, dots, letters, one dash.
# Nothing here can carry a shell metacharacter, a space or a path separator.
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+){1,3}(-[0-9A-Za-z]+(\.[0-9A-Za-z]+)*)?$")
HEALTH_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")
# Names and notes people write: letters (any script), digits, spaces, light punctuation.
_TEXT = r"[\w][\w .,;:'()&/+-]*"
TEXT_RE = re.compile(f"^{_TEXT}$")
PATH_RE = re.compile(r"^[A-Za-z0-9_./+][A-Za-z0-9_./+-]*$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]*$")
INTERPRETER_RE = re.compile(r"^/[A-Za-z0-9._/-]+$")
DATACENTER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
TIMEZONE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+/-]*$")

Slug = Annotated[StrictStr, Field(pattern=SLUG_RE.pattern, max_length=63)]
HostName = Annotated[StrictStr, Field(pattern=HOSTNAME_RE.pattern, max_length=63)]
Text = Annotated[StrictStr, Field(pattern=TEXT_RE.pattern, max_length=200)]
Notes = Annotated[StrictStr, Field(pattern=f"^(?:{_TEXT})?$", max_length=500)]
FilePath = Annotated[StrictStr, Field(pattern=PATH_RE.pattern, max_length=1024)]
UserName = Annotated[StrictStr, Field(pattern=USER_RE.pattern, max_length=32)]
Interpreter = Annotated[StrictStr, Field(pattern=INTERPRETER_RE.pattern, max_length=255)]
PositiveAmount = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=3)]
NonNegativeAmount = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=3)]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]


def check_version(value: str) -> str:
    """Accept a plain version string; reject anything else with a reason."""
    if not isinstance(value, str):
        raise ValueError(f"version must be a quoted string, got {value!r}")
    if not VERSION_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a plain version like 1.2.3")
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a plain version like 1.2.3") from None
    return value


def check_address(value: str) -> str:
    """An IP address or a DNS hostname."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if len(value) > 253 or not HOSTNAME_RE.fullmatch(value) or value.replace(".", "").isdigit():
        raise ValueError(f"{value!r} is not an IP address or host name")
    return value


def check_datacenter(name: object, timezone: object) -> str:
    """The datacenter's name (returned) and zone reach every inventory: plain words only."""
    if not isinstance(name, str) or not name:
        raise FleetInvalid("name", "required text field is missing")
    if len(name) > 63 or not DATACENTER_RE.fullmatch(name):
        raise FleetInvalid("name", f"{name!r} is not a plain name like rotterdam or dc-2")
    if not isinstance(timezone, str) or not TIMEZONE_RE.fullmatch(timezone):
        raise FleetInvalid("timezone", f"unknown time zone {timezone!r}")
    return name


def check_health_path(value: str) -> str:
    if not HEALTH_PATH_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a URL path like /healthz")
    return value


Address = Annotated[StrictStr, AfterValidator(check_address)]
HealthPath = Annotated[StrictStr, AfterValidator(check_health_path)]
# Before, so an unquoted YAML 1.2 (a float) is named as such instead of "not a string".
PlainVersion = Annotated[StrictStr, BeforeValidator(check_version)]
