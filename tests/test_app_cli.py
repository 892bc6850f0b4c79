"""`python app.py` as a user runs it: bad flags give clear messages; the demo page comes up offline.

The error paths call the launcher's ``main`` (all that ``app.py`` runs) in this process: same exit status, same
stderr, without paying an interpreter start per case. The demo starts as a real ``python app.py`` process.
"""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


def run_app(capsys, *args) -> tuple[int, str]:
    """(exit status, stderr) of ``python app.py ARGS``."""
    from asclepius_ui.launch import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse errors
        code = exc.code
    return code, capsys.readouterr().err


def test_missing_model_folder_is_a_clear_error(capsys):
    code, err = run_app(capsys, "--model", "/no/such/model", "--no-db")
    assert code == 2
    assert "Model folder not found: /no/such/model" in err
    assert "Traceback" not in err


def test_hub_id_while_offline_is_a_clear_error(capsys):
    code, err = run_app(capsys, "--model", "starmpcc/Asclepius-7B", "--no-db")
    assert code == 2 and "offline" in err and "--model DIR" in err


def test_demo_app_starts_offline_on_loopback(tmp_path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ASCLEPIUS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--db", f"sqlite:///{tmp_path}/r.db"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start = time.time()
    try:
        body = None
        while time.time() - start < 120 and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None, proc.stdout.read() if proc.poll() is not None else "no page"
        print(f"demo page up after {time.time() - start:.1f} s")
        assert "Demo model, not for clinical use" in body
    finally:
        proc.terminate()
        proc.wait(20)


def test_bad_database_url_and_users_file_are_clear_errors(tmp_path, tiny_bin_model, capsys):
    code, err = run_app(capsys, "--model", str(tiny_bin_model), "--db", "notaurl")
    assert code == 2 and "Not a database URL" in err and "Traceback" not in err
    bad = tmp_path / "users.json"
    bad.write_text("{not json")
    code, err = run_app(capsys, "--model", str(tiny_bin_model), "--no-db", "--auth", str(bad))
    assert code == 2 and "error:" in err and "Traceback" not in err
