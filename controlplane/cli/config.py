"""``controlplane config``: every setting in force, its value and where it came from.

Secrets never reach the output: the token (and any other ``SecretStr``) shows as ``***``,
URLs (database, Alertmanager, server) with their password as ``***``. The vault password
file is shown by path; it is never opened here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from controlplane.cli.common import JsonOpt, print_json, who
from controlplane.cli.remote import server_flag
from controlplane.errors import InvalidInput
from controlplane.settings import (
    Settings,
    config_file,
    config_file_keys,
    load_settings,
    mask_url,
    setting_source,
)


def _shown(value: Any) -> Any:
    """A setting's value as it may be printed."""
    if isinstance(value, SecretStr):
        return "***"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def settings_in_force(s: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """``(values, sources)`` for the config file and every setting, secrets masked."""
    keys = config_file_keys()
    path = config_file().absolute()
    by_env = "CONTROLPLANE_CONFIG" in os.environ
    values: dict[str, Any] = {"config_file": str(path)}
    sources: dict[str, str] = {
        "config_file": ("environment CONTROLPLANE_CONFIG" if by_env else "default")
        + ("" if path.is_file() else " (no such file)")
    }
    for name in Settings.model_fields:
        values[name] = _shown(getattr(s, name))
        sources[name] = setting_source(name, keys)
    # Defaults worked out from other settings: show what is used, and say so.
    values["data_dir"] = str(s.resolved_data_dir)
    values["fleet"] = str(s.resolved_fleet)
    values["database_url"] = s.masked_database_url
    if s.database_url is None:
        sources["database_url"] = "default (SQLite in the data dir)"
    vault = s.resolved_vault_password_file
    values["vault_password_file"] = None if vault is None else str(vault)
    if s.vault_password_file is None:
        sources["vault_password_file"] = (
            "default (<fleet>/vault-password)"
            if vault
            else "default (none: no <fleet>/vault-password)"
        )
    if s.python_interpreter is None:
        values["python_interpreter"] = sys.executable
        sources["python_interpreter"] = "default (this Python, for local hosts)"
    # Not a Settings field (the CLI reads it itself), but in force all the same.
    values["user"] = who()
    by_user = "CONTROLPLANE_USER" in os.environ
    sources["user"] = "environment CONTROLPLANE_USER" if by_user else "default (login user@host)"
    return values, sources


def show_config(as_json: JsonOpt = False) -> None:
    """Show every setting in force, its value and where it came from (environment, config
    file or default); the token and passwords in URLs as ***."""
    if server_flag() is not None:
        raise InvalidInput("config is local-only: it shows this machine's settings; drop --server")
    values, sources = settings_in_force(load_settings())
    if as_json:
        print_json({**values, "sources": sources})
        return
    width = max(len(k) for k in values)
    cells = {k: "-" if v is None else str(v) for k, v in values.items()}
    value_width = min(max(len(c) for c in cells.values()), 60)
    for key, cell in cells.items():
        sys.stdout.write(f"{key:{width}}  {cell:{value_width}}  {sources[key]}\n")
