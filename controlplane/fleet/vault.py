"""The fleet's Ansible Vault files: where they are, and opening them with Ansible's own vault
code, so a file opens here exactly when it opens for the deploy playbook.

Callers word their own errors (a preflight line, a notification target's setting, a log
scrubber that stays quiet); nothing here puts a decrypted value or the password into a
message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controlplane.errors import InvalidInput

# The one setting a user sets for the vault password; the engine hands it to Ansible.
PASSWORD_SETTING = "CONTROLPLANE_VAULT_PASSWORD_FILE"


class VaultUnusable(InvalidInput):
    """The password file is missing or gives no password, or a file does not decrypt or
    does not hold a YAML mapping. The message never quotes what was read."""


class VaultNotMapping(VaultUnusable):
    """The file decrypts, but not to a YAML mapping of names to secrets."""


def vault_file(fleet_dir: Path, name: str) -> Path:
    """Where a vault file of the fleet is: ``<fleet>/vault/<name>.yml`` (a member's slug,
    or another name such as ``cooperative``); the path the engine hands the deploy playbook."""
    return fleet_dir / "vault" / f"{name}.yml"


class Vault:
    """Ansible's vault opened with one password."""

    def __init__(self, lib: Any, password: bytes) -> None:
        self._lib = lib
        self._password = password

    def __repr__(self) -> str:
        return "Vault(***)"

    @property
    def password(self) -> str:
        """The password itself, for scrubbing it out of logs; never to be shown."""
        return self._password.decode("utf-8", errors="replace").strip()

    def decrypt(self, data: bytes) -> bytes:
        from ansible.errors import AnsibleError  # type: ignore[import-untyped]

        try:
            return bytes(self._lib.decrypt(data))
        except AnsibleError:
            # Ansible's message may quote the file: say nothing of it.
            raise VaultUnusable("does not decrypt with the vault password") from None

    def mapping(self, data: bytes) -> dict[str, Any]:
        """The decrypted YAML mapping of an encrypted file's bytes."""
        plain = self.decrypt(data)
        try:
            doc = yaml.safe_load(plain)
        except yaml.YAMLError:
            doc = None  # the parser's message quotes the decrypted text: never shown
        if not isinstance(doc, dict):
            raise VaultNotMapping("does not hold a YAML mapping once decrypted")
        return doc


def open_vault(password_file: Path) -> Vault:
    """The vault with the password from ``password_file``, read as Ansible reads it (a
    script's output when the file is executable). ``VaultUnusable`` names what is wrong."""
    from ansible.errors import AnsibleError
    from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
    from ansible.parsing.vault import (  # type: ignore[import-untyped]
        VaultLib,
        get_file_vault_secret,
    )

    if not password_file.exists():
        raise VaultUnusable("missing")
    try:
        secret = get_file_vault_secret(filename=str(password_file), loader=DataLoader())
        secret.load()
    except AnsibleError:
        # Ansible's message may quote a script's output; say only what to look at.
        raise VaultUnusable(
            "gives no usable password (empty, unreadable or a failing script)"
        ) from None
    raw = secret.bytes
    return Vault(VaultLib([("default", secret)]), raw if isinstance(raw, bytes) else b"")
