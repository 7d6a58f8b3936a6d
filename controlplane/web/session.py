"""Web sessions, the pure part: the signed cookie, its CSRF token, and the server secret.

The cookie never holds the API token. It holds a session payload, signed with a server
secret (itsdangerous): the token's id, a random session id and when the session was made.
Every request decodes it and asks the token store again whether that token is still
active, so revoking or expiring a token ends its web sessions at once. The signature
covers the time of signing, and a session older than ``SESSION_LIFETIME`` is refused.

The CSRF token of a session is an HMAC of its session id with the same secret: a form
carries it, and a write whose form token does not match the cookie's session is refused.
The login form, sent before any session exists, is bound the same way to a short-lived
random "login nonce" cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer

from controlplane.errors import InvalidInput
from controlplane.files import refuse_loose

SESSION_COOKIE = "cp_session"
LOGIN_COOKIE = "cp_login"
SESSION_LIFETIME = timedelta(hours=12)
LOGIN_LIFETIME = timedelta(minutes=30)
SECRET_FILE = "web-session.key"
SECRET_BYTES = 32

_SALT = "controlplane.web.session"
_TOKEN_ID = re.compile(r"^[0-9a-f]{12}$")
_SID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class Session:
    """What a valid cookie says: whose token, which session, since when (epoch seconds)."""

    token_id: str
    sid: str
    issued: int


def load_secret(data_dir: Path) -> bytes:
    """The server's session secret, generated into ``data_dir`` once (mode 600).

    Several processes may start at once (serve, a test): the file is created exclusively,
    and whoever loses the race reads the winner's secret."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(SECRET_BYTES) + "\n")
    refuse_loose(path, "web session secret")
    text = path.read_text().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < SECRET_BYTES // 2:
        raise InvalidInput(f"web session secret {path} is not a hex secret; delete it to renew")
    return secret


class SessionCodec:
    """Signs and checks session cookies and derives their CSRF tokens."""

    def __init__(self, secret: bytes, lifetime: timedelta = SESSION_LIFETIME) -> None:
        self._secret = secret
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self.lifetime = lifetime

    def issue(self, token_id: str, issued: int) -> tuple[str, Session]:
        """A new session for ``token_id``: the cookie value and what it stands for."""
        session = Session(token_id=token_id, sid=secrets.token_urlsafe(18), issued=issued)
        value = self._serializer.dumps({"t": session.token_id, "s": session.sid, "i": issued})
        return value, session

    def read(self, value: str | None) -> Session | None:
        """The session ``value`` stands for; None when absent, forged, malformed or old."""
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=int(self.lifetime.total_seconds()))
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict):
            return None
        token_id, sid, issued = data.get("t"), data.get("s"), data.get("i")
        if not (isinstance(token_id, str) and _TOKEN_ID.fullmatch(token_id)):
            return None
        if not (isinstance(sid, str) and _SID.fullmatch(sid)) or not isinstance(issued, int):
            return None
        return Session(token_id=token_id, sid=sid, issued=issued)

    def csrf(self, sid: str) -> str:
        """The CSRF token of session (or login nonce) ``sid``."""
        return hmac.new(self._secret, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str | None, presented: str | None) -> bool:
        if not sid or not presented:
            return False
        return hmac.compare_digest(self.csrf(sid), presented)


def new_login_nonce() -> str:
    return secrets.token_urlsafe(18)


def valid_nonce(value: str | None) -> str | None:
    return value if value and _SID.fullmatch(value) else None


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` when it is a path on this site, else ``default``: a login link must not
    send anyone on to another site (``//evil``, ``https://evil``, ``/\\evil``)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
