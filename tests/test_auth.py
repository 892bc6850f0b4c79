"""Users file with scrypt hashes, the management CLI, and the refusal to serve off loopback without auth."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from asclepius_ui.auth import LoginThrottle, UsersFileError, add_user, hash_password, load_users, verify_password
from asclepius_ui.launch import add_arguments, check_binding

ROOT = Path(__file__).resolve().parents[1]


def test_hash_is_salted_scrypt_and_verifies():
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a.startswith("scrypt$") and a != b and "correct horse" not in a
    assert verify_password("correct horse", a) and not verify_password("wrong horse", a)
    assert not verify_password("x", "plain-text")


def test_cli_adds_users_with_roles_and_never_stores_the_password(tmp_path):
    f = tmp_path / "users.json"
    for user, role, pw in (("alice", "admin", "alice-secret"), ("bob", "rater", "bob-secret1")):
        r = subprocess.run([sys.executable, "-m", "asclepius_ui.auth", "add", "--file", str(f), "--user", user,
                            "--role", role, "--password-stdin"], input=pw + "\n", text=True, capture_output=True,
                           cwd=ROOT)
        assert r.returncode == 0, r.stderr
    text = f.read_text()
    assert "alice-secret" not in text and "bob-secret1" not in text
    assert f.stat().st_mode & 0o077 == 0
    users = load_users(f)
    assert users.check("alice", "alice-secret") and users.check("bob", "bob-secret1")
    assert not users.check("alice", "bob-secret1") and not users.check("carol", "whatever1")
    assert users.role("alice") == "admin" and users.role("bob") == "rater" and users.is_admin("alice")
    listed = subprocess.run([sys.executable, "-m", "asclepius_ui.auth", "list", "--file", str(f)],
                            text=True, capture_output=True, cwd=ROOT)
    assert listed.stdout.split() == ["alice", "admin", "bob", "rater"]


def test_short_password_and_bad_files_are_refused(tmp_path):
    f = tmp_path / "users.json"
    r = subprocess.run([sys.executable, "-m", "asclepius_ui.auth", "add", "--file", str(f), "--user", "x",
                        "--password-stdin"], input="short\n", text=True, capture_output=True, cwd=ROOT)
    assert r.returncode == 2 and "at least 8" in r.stderr and not f.exists()
    with pytest.raises(UsersFileError, match="No users file"):
        load_users(tmp_path / "missing.json")
    f.write_text(json.dumps({"users": {"eve": {"role": "rater", "password": "hunter22"}}}))
    with pytest.raises(UsersFileError, match="plain text is refused"):
        load_users(f)
    f.write_text(json.dumps({"users": {"eve": {"role": "boss", "password": hash_password("hunter22")}}}))
    with pytest.raises(UsersFileError, match="role"):
        load_users(f)
    f.write_text("{not json")
    with pytest.raises(UsersFileError, match="not valid JSON"):
        load_users(f)


def _args(*argv: str) -> argparse.Namespace:
    return add_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_binding_off_loopback_needs_auth(tmp_path):
    for argv in (["--host", "0.0.0.0"], ["--host", "192.168.1.20"], ["--share"]):
        with pytest.raises(SystemExit, match="without --auth"):
            check_binding(_args(*argv))
    check_binding(_args())  # default 127.0.0.1
    check_binding(_args("--host", "::1"))
    users = tmp_path / "u.json"
    add_user(users, "admin", "admin-pass", "admin")
    with pytest.raises(SystemExit, match="over plain HTTP"):
        check_binding(_args("--host", "0.0.0.0", "--auth", str(users)))
    with pytest.warns(UserWarning, match="beyond this machine"):
        check_binding(_args("--host", "0.0.0.0", "--auth", str(users), "--insecure-http"))


def test_tls_flags_are_checked(tmp_path):
    users = tmp_path / "u.json"
    add_user(users, "admin", "admin-pass", "admin")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    with pytest.raises(SystemExit, match="both --ssl-certfile and --ssl-keyfile"):
        check_binding(_args("--ssl-certfile", str(cert)))
    with pytest.raises(SystemExit, match="no file at"):
        check_binding(_args("--ssl-certfile", str(cert), "--ssl-keyfile", str(key)))
    cert.write_text("x")
    key.write_text("x")
    with pytest.warns(UserWarning, match="beyond this machine"):
        check_binding(_args("--host", "10.0.0.5", "--auth", str(users), "--ssl-certfile", str(cert),
                            "--ssl-keyfile", str(key)))
    with pytest.raises(SystemExit, match="--rater-pages: unknown page"):
        check_binding(_args("--rater-pages", "study,admin"))


def test_failed_logins_are_throttled_per_user_and_address():
    now = [1000.0]
    t = LoginThrottle(free=3, address_free=5, base=2.0, cap=60.0, window=900.0, clock=lambda: now[0])
    for _ in range(3):
        assert t.wait("bob", "10.0.0.1") == 0
        t.failure("bob", "10.0.0.1")
    assert t.wait("bob", "10.0.0.1") == 2.0
    assert t.wait("bob", "10.0.0.9") == 2.0  # the same user from elsewhere
    assert t.wait("carol", "10.0.0.1") == 0  # one user's failures never lock out another behind the same address
    t.failure("carol", "10.0.0.1")
    t.failure("dave", "10.0.0.1")
    assert t.wait("erin", "10.0.0.1") == 2.0 and t.wait_address("10.0.0.1") == 2.0  # many users from one address
    assert t.wait("erin", "10.0.0.2") == 0
    t.success("carol", "10.0.0.1")  # a success clears only its own key: not bob's, not the address's
    assert t.wait("bob", "10.0.0.9") == 2.0 and t.wait_address("10.0.0.1") == 2.0
    t.failure("bob", "10.0.0.1")
    assert t.wait("bob", "10.0.0.9") == 4.0  # doubling
    now[0] += 8.0
    assert t.wait("bob", "10.0.0.1") == 0
    for _ in range(20):
        t.failure("bob", "10.0.0.1")
    assert t.wait("bob", "10.0.0.1") == 60.0  # capped
    t.success("bob", "10.0.0.1")
    assert t.wait("bob", "10.0.0.7") == 0
    now[0] += 901
    t.failure("dave", "10.0.0.3")
    assert t.wait("dave", "10.0.0.3") == 0  # old failures fall out of the window


def test_the_login_route_is_throttled_over_https(tmp_path, tiny_engine, launch_app):
    import ssl
    import urllib.error
    import urllib.parse
    import urllib.request

    from asclepius_ui.ui.context import AppContext

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    add_user(tmp_path / "u.json", "bob", "bob-password", "rater")
    users = load_users(tmp_path / "u.json")
    url = launch_app(AppContext(engine=tiny_engine, users=users), auth=users.check, ssl_certfile=str(cert),
                     ssl_keyfile=str(key), throttle=LoginThrottle(free=2, base=30.0))
    url = url.replace("http://", "https://")
    tls = ssl.create_default_context(cafile=str(cert))
    tls.check_hostname = False

    def login(password: str) -> int:
        data = urllib.parse.urlencode({"username": "bob", "password": password}).encode()
        try:
            return urllib.request.urlopen(url + "login", data=data, context=tls).status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert [login("wrong-1"), login("wrong-2"), login("bob-password")] == [400, 400, 429]


def test_app_refuses_a_public_host_without_auth():
    r = subprocess.run([sys.executable, "app.py", "--host", "0.0.0.0", "--no-db"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode != 0 and "Refusing to serve" in r.stderr
