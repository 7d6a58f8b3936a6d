"""Settings, built once from ``CONTROLPLANE_*`` environment variables and a TOML file.

Precedence, highest first: explicit arguments (CLI flags), environment, the TOML file
(``CONTROLPLANE_CONFIG`` or ``./controlplane.toml``), defaults. Nothing is read at import.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from controlplane.errors import InvalidInput
from controlplane.files import refuse_loose, refuse_loose_tree

# Playbooks, report templates, migrations and the shipped fleets live inside the package,
# so a plain (non-editable) install finds them wherever the CLI runs.
PACKAGE_DIR = Path(__file__).resolve().parent
PLAYBOOKS_DIR = PACKAGE_DIR / "playbooks"
TEMPLATES_DIR = PACKAGE_DIR / "templates"


class Settings(BaseSettings):
    """Everything configurable about one control-plane node."""

    model_config = SettingsConfigDict(env_prefix="CONTROLPLANE_", extra="forbid")

    data_dir: Path = Field(default=Path("var"), description="state, artifacts, lab host roots")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite")
    fleet: Path = Field(default=Path("inventories/lab"), description="fleet directory")
    timezone: str = Field(default="Europe/Amsterdam", description="default IANA zone")
    artifact_retention: int = Field(default=200, ge=1, description="run artifact dirs kept")
    vault_password_file: Path | None = Field(
        default=None,
        description="Ansible Vault password file of the member secrets (the engine hands it "
        "to Ansible); default <fleet>/vault-password when it exists",
    )
    run_timeout_seconds: int = Field(default=3600, ge=10, description="a run is stopped after")
    strategy: str = Field(
        default="mitogen_linear",
        pattern=r"^(mitogen_linear|mitogen_free|linear|free)$",
        description="Ansible strategy; mitogen falls back to linear when it fails",
    )
    health_timeout_seconds: int = Field(default=15, ge=1, description="health gate per host")
    alertmanager_url: str | None = Field(
        default=None, description="create a silence there for each maintenance window"
    )
    python_interpreter: str | None = Field(
        default=None, description="interpreter for local-connection hosts; default this Python"
    )
    probe_interval_seconds: float = Field(
        default=30.0, ge=0.2, le=3600, description="seconds between probe rounds of every instance"
    )
    probe_timeout_seconds: float = Field(
        default=3.0, gt=0, le=60, description="timeout of each HTTP request a probe makes"
    )
    probe_retention_hours: int = Field(
        default=168, ge=2, description="raw probe samples kept; their hourly counts stay for good"
    )
    metrics_address: str = Field(default="127.0.0.1", description="serve: /metrics listen address")
    metrics_port: int = Field(
        default=9480, ge=0, le=65535, description="serve: /metrics port (0: any free port)"
    )
    metrics_public: bool = Field(
        default=False, description="serve: /metrics without a token (else metrics or admin)"
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="serve: API body limit"
    )
    server: str | None = Field(
        default=None, description="remote CLI: the control plane to talk to over HTTP"
    )
    token: SecretStr | None = Field(
        default=None, description="remote CLI: the API token sent to the server (a secret)"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = config_file()
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'controlplane.db'}"

    @property
    def masked_database_url(self) -> str:
        """The database URL with its password replaced by ``***``: the only form to show."""
        return mask_database_url(self.resolved_database_url)

    @property
    def resolved_vault_password_file(self) -> Path | None:
        if self.vault_password_file is not None:
            return self.vault_password_file.resolve()
        default = self.resolved_fleet / "vault-password"
        return default if default.exists() else None

    @property
    def resolved_fleet(self) -> Path:
        """The fleet dir; a relative path that does not exist here falls back to the fleets
        shipped in the package (``inventories/lab``, ``inventories/rotterdam``)."""
        if self.fleet.is_absolute() or self.fleet.exists():
            return self.fleet.resolve()
        shipped = PACKAGE_DIR / self.fleet
        return shipped if shipped.exists() else self.fleet.resolve()


def config_file() -> Path:
    """The TOML settings file: ``CONTROLPLANE_CONFIG``, else ``./controlplane.toml``."""
    return Path(os.environ.get("CONTROLPLANE_CONFIG", "controlplane.toml"))


def mask_database_url(url: str) -> str:
    """``url`` without its password, also when it does not parse as a SQLAlchemy URL."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # Unparseable: keep the scheme and the part after the last "@", drop the credentials.
        if "@" not in url:
            return url
        scheme, sep, _ = url.partition("://")
        host = url.rsplit("@", 1)[1]
        return f"{scheme}{sep}***@{host}" if sep else f"***@{host}"


def mask_url(url: str) -> str:
    """Any URL with its password replaced by ``***`` (an Alertmanager or server URL may
    carry credentials as a database URL does)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def setting_source(name: str, file_keys: Iterable[str] = ()) -> str:
    """Where setting ``name`` came from: its environment variable, the TOML file, or the
    default. (Flags are not settings the ``config`` command sees.)"""
    variable = f"CONTROLPLANE_{name.upper()}"
    # pydantic-settings matches environment names without regard to case.
    if any(key.upper() == variable for key in os.environ):
        return f"environment {variable}"
    if name in set(file_keys):
        return f"config file {config_file()}"
    return "default"


def config_file_keys() -> set[str]:
    """The keys the TOML settings file sets (none when it does not exist)."""
    path = config_file()
    if not path.is_file():
        return set()
    try:
        with path.open("rb") as fh:
            return set(tomllib.load(fh))
    except (OSError, tomllib.TOMLDecodeError):
        return set()


def refuse_loose_files(settings: Settings) -> None:
    """Refuse a config file, fleet or vault password file that group or others may write."""
    refuse_loose(config_file().absolute(), "config file")
    vault_password = settings.resolved_vault_password_file
    if vault_password is not None:
        refuse_loose(vault_password, "vault password file")
    refuse_loose_tree(settings.resolved_fleet, "fleet dir")


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one-line ``InvalidInput``, and refuse
    loose trusted files (see ``controlplane.files``)."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**clean)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"setting {field}: {msg}") from None
    refuse_loose_files(settings)
    return settings
