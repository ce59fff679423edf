"""Console sessions: a signed, expiring cookie naming the admin key it was opened with, and the CSRF
token that every form and htmx POST must carry.

The cookie holds no key and no key hash: only an HMAC of the key's hash (so removing or rotating the
key in gateway.yaml ends its sessions at the next request), the expiry and a random nonce, signed
with the console secret. The CSRF token is an HMAC of the nonce: a page of another origin cannot
read it, and a cookie alone is never enough to change anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.auth import Principal

COOKIE = "gw_console"
LOGIN_COOKIE = "gw_console_login"  # the login form's own CSRF nonce (there is no session yet)


class SecretError(ValueError):
    """The configured console secret is unusable (the message names the env var)."""


def load_secret(env_name: str, state_dir: Path | None) -> bytes:
    """The signing key: the env var when set, else a random key kept in the state directory (so a
    restart keeps sessions), else one in memory for this process."""
    value = os.environ.get(env_name)
    if value is not None:
        if len(value) < 32:
            raise SecretError(f"console.secret_env: ${env_name} must hold at least 32 characters "
                              f"(it has {len(value)}); e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return value.encode()
    if state_dir is None:
        return secrets.token_bytes(32)
    path = Path(state_dir) / "console.secret"
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return data


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    expires: float
    nonce: str


class Sessions:
    def __init__(self, secret: bytes, lifetime_s: float) -> None:
        self._secret = secret
        self.lifetime_s = lifetime_s

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._secret, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()

    def key_id(self, key_digest: str) -> str:
        return self._mac("key", key_digest)[:32]

    def issue(self, key_digest: str, now: float | None = None) -> tuple[str, Session]:
        session = Session(self.key_id(key_digest), (now or time.time()) + self.lifetime_s, secrets.token_hex(16))
        body = base64.urlsafe_b64encode(json.dumps(
            {"k": session.key_id, "e": round(session.expires), "n": session.nonce}).encode()).decode().rstrip("=")
        return f"{body}.{self._mac('session', body)}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(str(data["k"]), float(data["e"]), str(data["n"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > (now or time.time()) else None

    def csrf(self, nonce: str) -> str:
        return self._mac("csrf", nonce)[:40]

    def csrf_ok(self, nonce: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(nonce), token)


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """Who is looking at this page: the admin principal, the CSRF token its forms carry, and whether
    this is open mode (no login, a banner says so)."""

    principal: Principal
    csrf: str
    open_mode: bool


USER: web.RequestKey[ConsoleUser] = web.RequestKey("console_user")
