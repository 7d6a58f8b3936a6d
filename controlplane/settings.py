"""Settings, built once from ``CONTROLPLANE_*`` environment variables and a TOML file.

Precedence, highest first: explicit arguments (CLI flags), environment, the TOML file
(``CONTROLPLANE_CONFIG`` or ``./controlplane.toml``), defaults. Nothing is read at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from controlplane.errors import InvalidInput

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
        default=None, description="Ansible Vault password file; default <fleet>/vault-password"
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
        toml_file = Path(os.environ.get("CONTROLPLANE_CONFIG", "controlplane.toml"))
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


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one-line ``InvalidInput``."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"setting {field}: {msg}") from None
