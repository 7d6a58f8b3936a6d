"""The control plane's own files: private by default, and refused when others can change them.

Two rules, both from how OpenSSH treats a private key:

* Everything the control plane writes (data dir, SQLite file, run artifacts, logs, reports)
  is private to its user: the process runs with umask 077.
* A file the control plane *trusts* (its TOML config, the fleet directory, the vault
  password file) is refused when its group or others may write it, because whoever can
  write it can point the control plane at their own hosts, playbook values or secrets.
  Read bits are not judged here: the shipped lab fleet is a plain 0644/0755 checkout.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from controlplane.errors import InvalidInput

PRIVATE_UMASK = 0o077
LOOSE_BITS = stat.S_IWGRP | stat.S_IWOTH


def make_private() -> int:
    """Set the process umask so new files and dirs are private; returns the old umask."""
    return os.umask(PRIVATE_UMASK)


def refuse_loose(path: Path, what: str) -> None:
    """Raise ``InvalidInput`` when ``path`` (followed through links) is group/other-writable."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & LOOSE_BITS:
        raise InvalidInput(
            f"{what} {path} is writable by group or others (mode {mode:04o}); chmod go-w it"
        )


def refuse_loose_tree(root: Path, what: str) -> None:
    """``refuse_loose`` for ``root`` and everything below it (a fleet is a handful of files).

    A loose file inside is named by its own path, so the message says what to fix.
    """
    refuse_loose(root, what)
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in sorted(dirnames) + sorted(filenames):
            refuse_loose(base / name, f"{what} entry")
