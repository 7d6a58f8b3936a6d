"""`controlplane config`: every setting, its value and where it came from; secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controlplane.cli import run
from controlplane.settings import mask_url
from tests.conftest import LAB

TOKEN = "cpt_0123456789abcdef-the-token-itself"
DB_PASSWORD = "hunter2-db-password"
AM_PASSWORD = "am-basic-auth-password"


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    toml = tmp_path / "controlplane.toml"
    toml.write_text('timezone = "Europe/Brussels"\nartifact_retention = 50\n')
    toml.chmod(0o600)
    monkeypatch.chdir(tmp_path)
    for name in ("SERVER", "FLEET", "DATA_DIR", "VAULT_PASSWORD_FILE", "USER", "TIMEZONE"):
        monkeypatch.delenv(f"CONTROLPLANE_{name}", raising=False)
    monkeypatch.setenv("CONTROLPLANE_CONFIG", str(toml))
    monkeypatch.setenv("CONTROLPLANE_FLEET", str(LAB))
    monkeypatch.setenv("CONTROLPLANE_TOKEN", TOKEN)
    monkeypatch.setenv(
        "CONTROLPLANE_DATABASE_URL", f"postgresql://cp:{DB_PASSWORD}@127.0.0.1:1/controlplane"
    )
    monkeypatch.setenv(
        "CONTROLPLANE_ALERTMANAGER_URL", f"https://silencer:{AM_PASSWORD}@am.example:9093"
    )
    return toml


def test_config_shows_values_and_sources_and_never_a_secret(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["config", "--json"]) == 0
    as_json = capsys.readouterr()
    assert run(["config"]) == 0
    as_text = capsys.readouterr()
    vault_password = (LAB / "vault-password").read_text().strip()
    for shown in (as_json.out, as_json.err, as_text.out, as_text.err):
        for secret in (TOKEN, DB_PASSWORD, AM_PASSWORD, vault_password):
            assert secret not in shown

    data = json.loads(as_json.out)
    sources = data["sources"]
    assert data["token"] == "***"
    assert sources["token"] == "environment CONTROLPLANE_TOKEN"
    assert data["database_url"] == "postgresql://cp:***@127.0.0.1:1/controlplane"
    assert data["alertmanager_url"] == "https://silencer:***@am.example:9093"
    assert (data["timezone"], sources["timezone"]) == (
        "Europe/Brussels",
        f"config file {configured}",
    )
    assert (data["artifact_retention"], data["probe_retention_hours"]) == (50, 168)
    assert sources["probe_retention_hours"] == "default"
    assert (data["config_file"], sources["config_file"]) == (
        str(configured),
        "environment CONTROLPLANE_CONFIG",
    )
    # The vault password file is shown by path, with where that path came from.
    assert data["vault_password_file"] == str(LAB / "vault-password")
    assert sources["vault_password_file"] == "default (<fleet>/vault-password)"
    assert set(data) - {"sources", "config_file", "user"} >= {
        "data_dir",
        "fleet",
        "server",
        "strategy",
        "metrics_port",
    }

    rows = {line.split()[0]: line for line in as_text.out.splitlines()}
    assert rows["token"].split()[1:] == ["***", "environment", "CONTROLPLANE_TOKEN"]
    assert rows["timezone"].split()[1] == "Europe/Brussels"
    assert rows["timezone"].endswith(f"config file {configured}")


def test_config_without_a_token_or_file(
    configured: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CONTROLPLANE_TOKEN")
    monkeypatch.setenv("CONTROLPLANE_CONFIG", str(configured.parent / "absent.toml"))
    monkeypatch.setenv("CONTROLPLANE_VAULT_PASSWORD_FILE", "secrets/vault-pass")
    assert run(["config", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["token"] is None and data["sources"]["token"] == "default"
    assert data["sources"]["config_file"] == "environment CONTROLPLANE_CONFIG (no such file)"
    assert data["timezone"] == "Europe/Amsterdam"
    assert data["vault_password_file"] == str(configured.parent / "secrets" / "vault-pass")
    assert data["sources"]["vault_password_file"] == "environment CONTROLPLANE_VAULT_PASSWORD_FILE"


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("https://u:p4ss@host:9093/path?q=1") == "https://u:***@host:9093/path?q=1"
    assert mask_url("https://host:9093/") == "https://host:9093/"
    assert mask_url("https://u@host/") == "https://u@host/"
