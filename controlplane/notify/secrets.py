"""Each target's signing secret, read when ``serve`` starts, and the signer built from it.

A secret is a Standard Webhooks secret: ``whsec_`` followed by base64 of 24 to 64 random
bytes. It comes from an environment variable or from a key in a vault file of the fleet
(decrypted with the fleet's vault password, as Ansible would). Every problem is one line
naming the target and where its secret should come from; no message, log line or
``repr`` ever holds the secret itself.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from math import floor
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook

from controlplane.errors import InvalidInput
from controlplane.fleet.vault import (
    PASSWORD_SETTING,
    Vault,
    VaultNotMapping,
    VaultUnusable,
    open_vault,
    vault_file,
)
from controlplane.notify.config import Target, VaultRef

PREFIX = "whsec_"
MIN_BYTES, MAX_BYTES = 24, 64


class Signer:
    """Signs a body for one target; holds the key, never shows it."""

    __slots__ = ("_webhook",)

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def __repr__(self) -> str:
        return "Signer(***)"

    def headers(self, msg_id: str, at: datetime, body: str) -> dict[str, str]:
        """The three Standard Webhooks headers for ``body`` sent at ``at``."""
        # The signed timestamp is whole seconds, exactly the header's value; the library
        # reads the time as UTC.
        at = at.astimezone(UTC)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(floor(at.timestamp())),
            "webhook-signature": self._webhook.sign(msg_id, at, body),
        }


def check_secret(value: str, where: str) -> str:
    """``value`` must be ``whsec_`` + base64 of 24-64 bytes; the message never quotes it."""
    if not value.startswith(PREFIX):
        raise InvalidInput(f"{where}: the secret must start with {PREFIX} (Standard Webhooks)")
    try:
        key = base64.b64decode(value[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: the secret after {PREFIX} is not base64") from None
    if not MIN_BYTES <= len(key) <= MAX_BYTES:
        raise InvalidInput(
            f"{where}: the secret holds {len(key)} bytes; use {MIN_BYTES} to {MAX_BYTES} "
            f"random bytes (e.g. {PREFIX}$(head -c 32 /dev/urandom | base64))"
        )
    return value


def signers(
    targets: tuple[Target, ...],
    fleet_dir: Path,
    vault_password_file: Path | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Signer]:
    """A signer per target, by name; the first missing or malformed secret raises."""
    env = os.environ if environ is None else environ
    vaults = _Vaults(fleet_dir, vault_password_file)
    out: dict[str, Signer] = {}
    for t in targets:
        where = f"notification target {t.name} ({t.secret_source})"
        if t.secret_env is not None:
            value = env.get(t.secret_env)
            if not value:
                raise InvalidInput(f"{where}: the environment variable is not set")
        else:
            assert t.secret_vault is not None
            value = vaults.lookup(t.secret_vault, where)
        out[t.name] = Signer(check_secret(value.strip(), where))
    return out


class _Vaults:
    """Vault files decrypted once each, only when a target needs one."""

    def __init__(self, fleet_dir: Path, password_file: Path | None) -> None:
        self.fleet_dir = fleet_dir
        self.password_file = password_file
        self._docs: dict[str, Any] = {}
        self._vault: Vault | None = None

    def lookup(self, ref: VaultRef, where: str) -> str:
        doc = self._doc(ref.file, where)
        node: Any = doc
        for part in ref.key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise InvalidInput(f"{where}: the vault file has no key {ref.key}")
            node = node[part]
        if not isinstance(node, str):
            raise InvalidInput(f"{where}: the vault key {ref.key} is not a text value")
        return node

    def _doc(self, file: str, where: str) -> Any:
        if file in self._docs:
            return self._docs[file]
        path = vault_file(self.fleet_dir, file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"{where}: cannot read {path} ({exc.strerror})") from None
        vault = self._open(where)
        try:
            doc = vault.mapping(data)
        except VaultNotMapping:
            raise InvalidInput(
                f"{where}: {path} does not hold a YAML mapping once decrypted"
            ) from None
        except VaultUnusable:
            raise InvalidInput(
                f"{where}: {path} does not decrypt with the vault password ({PASSWORD_SETTING})"
            ) from None
        self._docs[file] = doc
        return doc

    def _open(self, where: str) -> Vault:
        if self._vault is not None:
            return self._vault
        if self.password_file is None or not self.password_file.exists():
            raise InvalidInput(f"{where}: no vault password file ({PASSWORD_SETTING})")
        try:
            self._vault = open_vault(self.password_file)
        except VaultUnusable:
            raise InvalidInput(
                f"{where}: the vault password file {self.password_file} gives no usable password"
            ) from None
        return self._vault
