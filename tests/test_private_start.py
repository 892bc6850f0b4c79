"""Private from the first byte: the app started on a fresh folder makes its database, WAL, SHM, uploads and private
folder readable by its user only, and removes the private folder when stopped by SIGTERM or Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from asclepius_ui.storage import open_storage
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _upload(url: str, name: str, data: bytes) -> str:
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    req = urllib.request.Request(url + "gradio_api/upload", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_fresh_start_is_private_and_cleans_up(stop, tmp_path, tiny_bin_model):
    data, tmp = tmp_path / "data", tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "app.py", "--model", str(tiny_bin_model), "--device", "cpu",
                             "--port", str(port), "--db", f"sqlite:///{data}/ratings.db"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(url + "config", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read()
        uploaded = _upload(url, "study.jsonl", b'{"note": "SECRET-PHI"}\n')
        db = data / "ratings.db"
        files = {p.name: _mode(p) for p in (db, data / "ratings.db-wal", data / "ratings.db-shm")}
        assert files == {"ratings.db": 0o600, "ratings.db-wal": 0o600, "ratings.db-shm": 0o600}
        private = list(tmp.glob("asclepius-private-*"))
        assert len(private) == 1 and _mode(private[0]) == 0o700
        kept = [p for p in private[0].rglob("*")]
        assert any(p.name == "study.jsonl" for p in kept), (uploaded, kept)
        # the upload answer names the file without the server's path; its URL still serves it
        [shown] = json.loads(uploaded)
        assert shown.startswith("/asclepius-files/") and str(tmp) not in uploaded and "private" not in shown
        with urllib.request.urlopen(f"{url}gradio_api/file={shown}", timeout=30) as r:
            assert r.read() == b'{"note": "SECRET-PHI"}\n'
        for p in kept:
            assert _mode(p) & 0o077 == 0, (p, oct(_mode(p)))
    finally:
        proc.send_signal(stop)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert not list(tmp.glob("asclepius-private-*")), "the private folder outlived the server"


def test_an_old_world_readable_database_is_made_private(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    open_storage(url).close()
    os.chmod(tmp_path / "r.db", 0o644)
    st = open_storage(url)
    try:
        assert _mode(tmp_path / "r.db") == 0o600
    finally:
        st.close()
