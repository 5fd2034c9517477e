"""Who may do what in the workbench, and how they prove who they are.

Passwords are hashed with argon2id; a session is a signed, expiring cookie (HttpOnly,
SameSite=Strict, Secure behind TLS) naming the user, the user's session epoch (raised
by every change to the account, which ends its sessions) and the session's CSRF token,
which every form sends back. Failed sign-ins are throttled per address and lock the
account after ``workbench.max_failed_logins`` in a row.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from lienwatch.errors import LienwatchError

# What each role may do. Reading borrower data is "read"; each change is its own right.
PERMISSIONS: dict[str, frozenset[str]] = {
    "analyst": frozenset({"read", "decide", "hold"}),
    "supervisor": frozenset({"read", "decide", "hold", "release", "assign", "workload"}),
    "auditor": frozenset({"read", "workload", "audit"}),
    "admin": frozenset({"users"}),
}
SESSION_COOKIE = "lienwatch_session"
LOGIN_COOKIE = "lienwatch_login"
ADDRESS_FAILURES = 20  # failed sign-ins from one address in the window that pause it
ADDRESS_WINDOW_SECONDS = 600

# argon2id with the RFC 9106 low-memory profile: 64 MiB, 3 passes, 4 lanes a password
PASSWORD_HASHING = profiles.RFC_9106_LOW_MEMORY
_hasher = PasswordHasher.from_parameters(PASSWORD_HASHING)
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))  # an unknown user costs a check too


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise LienwatchError("a password of at least 12 characters")
    return _hasher.hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (a missing hash checks a
    dummy, so an unknown user takes as long as a known one)."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def can(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())


@dataclass(frozen=True)
class Session:
    username: str
    epoch: int
    csrf: str


class Sessions:
    """Signs and reads session cookies and the sign-in form's token."""

    def __init__(self, key: str, max_age_seconds: int) -> None:
        self._session = URLSafeTimedSerializer(key, salt="lienwatch-workbench-session")
        self._login = URLSafeTimedSerializer(key, salt="lienwatch-workbench-login")
        self.max_age = max_age_seconds

    def issue(self, username: str, epoch: int) -> tuple[str, Session]:
        session = Session(username, epoch, secrets.token_urlsafe(24))
        return self._session.dumps([username, epoch, session.csrf]), session

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            username, epoch, csrf = self._session.loads(cookie, max_age=self.max_age)
        except (BadSignature, ValueError, TypeError):
            return None
        return Session(str(username), int(epoch), str(csrf))

    def login_token(self) -> tuple[str, str]:
        """A token for the sign-in form and the cookie that vouches for it."""
        token = secrets.token_urlsafe(24)
        return token, self._login.dumps(token)

    def login_token_valid(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        try:
            expected = self._login.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return same(str(expected), token)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens (a missing one matches nothing)."""
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


class Throttle:
    """Failed sign-ins per address in a sliding window (kept in memory: a restart forgets
    them, the accounts' lockouts are in the store)."""

    def __init__(self, limit: int = ADDRESS_FAILURES, window: float = ADDRESS_WINDOW_SECONDS):
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        found = self._failures.setdefault(address, deque())
        while found and found[0] < now - self.window:
            found.popleft()
        return found

    def blocked(self, address: str) -> bool:
        with self._lock:
            return len(self._recent(address, time.monotonic())) >= self.limit

    def failed(self, address: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._recent(address, now).append(now)


def cookie_options(secure: bool, max_age: int | None) -> dict[str, Any]:
    return {
        "max_age": max_age,
        "httponly": True,
        "samesite": "strict",
        "secure": secure,
        "path": "/",
    }
