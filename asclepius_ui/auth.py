"""Users for ``--auth FILE``: a JSON file of names, roles (rater/admin) and scrypt password hashes.

    python -m asclepius_ui.auth add --file users.json --user alice --role admin      # asks for the password
    echo "$PW" | python -m asclepius_ui.auth add --file users.json --user bob --password-stdin
    python -m asclepius_ui.auth list --file users.json

Passwords are never stored: each is hashed with the standard library's scrypt and a random salt.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

ROLES = ("rater", "admin")
N, R, P, DKLEN = 2**14, 8, 1, 32
MIN_PASSWORD = 8


class UsersFileError(InputError):
    """The users file is missing or malformed; the message says what to fix."""


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64), with a fresh 16-byte salt by default."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=DKLEN)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY = hash_password(secrets.token_hex(8))


@dataclass
class Users:
    """The loaded users file. ``check`` is what Gradio's ``auth=`` calls."""

    entries: dict[str, dict] = field(default_factory=dict)

    def check(self, username: str, password: str) -> bool:
        entry = self.entries.get(username or "")
        ok = verify_password(password or "", entry["password"] if entry else _DUMMY)  # same work either way
        return ok and entry is not None

    def role(self, username: str | None) -> str | None:
        entry = self.entries.get(username or "")
        return entry["role"] if entry else None

    def is_admin(self, username: str | None) -> bool:
        return self.role(username) == "admin"

    def names(self) -> list[str]:
        return sorted(self.entries)


@dataclass
class LoginThrottle:
    """Failed logins per user name and per client address. After ``free`` failures for one user within ``window``
    seconds (``address_free`` from one address, set higher so that one user's mistakes never lock out a colleague
    behind the same address), each further attempt waits ``base`` seconds, doubling per failure, at most ``cap``.
    A success clears only that user's count: logging in to one's own account does not reset the address's."""

    free: int = 5
    window: float = 900.0
    base: float = 2.0
    cap: float = 300.0
    address_free: int = 20
    clock: Callable[[], float] = time.monotonic
    _fails: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _keys(self, user: str, addr: str) -> tuple[tuple[str, int], tuple[str, int]]:
        return (f"user:{user.lower()}", self.free), (f"addr:{addr}", self.address_free)

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._fails.get(key, []) if now - t < self.window]
        if times:
            self._fails[key] = times
        else:
            self._fails.pop(key, None)
        return times

    def _wait(self, keys, now: float) -> float:
        longest = 0.0
        for key, free in keys:
            times = self._recent(key, now)
            if len(times) >= free:
                delay = min(self.cap, self.base * 2 ** (len(times) - free))
                longest = max(longest, times[-1] + delay - now)
        return max(0.0, longest)

    def wait(self, user: str, addr: str) -> float:
        """Seconds before ``user`` from ``addr`` may try again (0: now)."""
        with self._lock:
            return self._wait(self._keys(user, addr), self.clock())

    def wait_address(self, addr: str) -> float:
        """Seconds before anyone from ``addr`` may try again (checked before a login request is even read)."""
        with self._lock:
            return self._wait(self._keys("", addr)[1:], self.clock())

    def failure(self, user: str, addr: str) -> None:
        now = self.clock()
        with self._lock:
            for key, _ in self._keys(user, addr):
                self._fails.setdefault(key, []).append(now)
                self._fails[key] = self._fails[key][-100:]

    def success(self, user: str, addr: str) -> None:
        with self._lock:
            self._fails.pop(self._keys(user, addr)[0][0], None)


@dataclass
class LoginAttempt:
    """The login being checked: the client's address (set by the server) and, when the throttle refused it, how
    many seconds it must wait (set by the check)."""

    address: str = "?"
    wait: float = 0.0


LOGIN_ATTEMPT: ContextVar[LoginAttempt | None] = ContextVar("login_attempt", default=None)


def throttled_check(check: Callable[[str, str], bool], throttle: LoginThrottle) -> Callable[[str, str], bool]:
    """``check`` behind ``throttle``: the credential check sees every login (whatever the form encoding), so
    this is where the user name is known. A throttled attempt is refused without checking the password."""

    def guarded(username: str, password: str) -> bool:
        attempt = LOGIN_ATTEMPT.get() or LoginAttempt()
        user = (username or "").strip()
        wait = throttle.wait(user, attempt.address)
        if wait > 0:
            attempt.wait = wait
            return False
        ok = bool(check(username, password))
        (throttle.success if ok else throttle.failure)(user, attempt.address)
        return ok

    return guarded


def _read(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsersFileError(f"No users file at {path}: create one with "
                             f"`python -m asclepius_ui.auth add --file {path} --user NAME --role admin`.") from None
    except json.JSONDecodeError as exc:
        raise UsersFileError(f"{path} is not valid JSON: {exc}") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict):
        raise UsersFileError(f"{path} must hold {{\"users\": {{name: {{\"role\": ..., \"password\": ...}}}}}}.")
    for name, entry in users.items():
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            raise UsersFileError(f"{path}: user {name!r} needs a role, one of {', '.join(ROLES)}.")
        if not str(entry.get("password", "")).startswith("scrypt$"):
            raise UsersFileError(f"{path}: user {name!r} has no scrypt password hash (plain text is refused); "
                                 "set it with `python -m asclepius_ui.auth add`.")
    return users


def load_users(path: str | Path) -> Users:
    """Read and check a users file; raises ``UsersFileError`` with a clear message."""
    users = _read(Path(path))
    if not users:
        raise UsersFileError(f"{path} has no users: add one with `python -m asclepius_ui.auth add`.")
    return Users(users)


def add_user(path: str | Path, user: str, password: str, role: str = "rater") -> None:
    """Add or update ``user`` (the file is created, and rewritten atomically, readable by its owner only)."""
    user = user.strip()
    if not user or ":" in user:
        raise UsersFileError("A user name must be non-empty and without ':'.")
    if role not in ROLES:
        raise UsersFileError(f"Role must be one of {', '.join(ROLES)}.")
    if len(password) < MIN_PASSWORD:
        raise UsersFileError(f"The password must have at least {MIN_PASSWORD} characters.")
    p = Path(path)
    users = _read(p) if p.exists() else {}
    users[user] = {"role": role, "password": hash_password(password)}
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps({"users": users}, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m asclepius_ui.auth", description="Manage the --auth users file.")
    sub = ap.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a user or change their password/role")
    add.add_argument("--file", required=True)
    add.add_argument("--user", required=True)
    add.add_argument("--role", choices=ROLES, default="rater")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    ls = sub.add_parser("list", help="list users and roles")
    ls.add_argument("--file", required=True)
    args = ap.parse_args(argv)
    try:
        if args.command == "list":
            for name, entry in sorted(_read(Path(args.file)).items()):
                print(f"{name}\t{entry['role']}")
            return 0
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"Password for {args.user}: ")
            if getpass.getpass("Again: ") != password:
                print("error: the passwords differ", file=sys.stderr)
                return 2
        add_user(args.file, args.user, password, args.role)
    except UsersFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"saved {args.user} ({args.role}) in {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
