"""A quiet console: `python app.py` with the demo model, asked twice about one note (the second answer reuses the
note's cached prefix), prints no bitsandbytes kernel lookup, no deprecation warning and no share-link hint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gradio_client import Client

from asclepius_ui.examples import example_notes
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("kernels-community", "gemm_4bit_forward", "past_key_values", "FutureWarning",
         "share=True")


def test_the_app_with_the_demo_model_starts_and_answers_quietly(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ASCLEPIUS_CACHE": str(tmp_path)}
    log = tmp_path / "console.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu",
                                 "--db", f"sqlite:///{tmp_path / 'r.db'}"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "Running on" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "Running on http://127.0.0.1:" in log.read_text(), log.read_text()
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        note = next(iter(example_notes().values()))
        for question in ("What was the diagnosis?", "Which drugs was the patient given?"):
            chat, status, _ = client.predict(note, "Free question", question, False, "greedy", 8, False, 0.7, 0.9,
                                             1, 1.0, "hold", api_name="/ask")
            assert "tokens/s" in status, status
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    console = log.read_text()
    assert not [n for n in NOISE if n in console], console
