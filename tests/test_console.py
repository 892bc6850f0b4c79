"""A quiet console: `python app.py` with the demo model, asked about one note in a real browser and then through the
API (the second answer reuses the note's cached prefix), prints no bitsandbytes kernel lookup, no warning, no
traceback and no share-link hint (generation-time warnings such as transformers' ``past_key_values`` one would show)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gradio_client import Client
from playwright.sync_api import expect

from asclepius_ui.examples import example_notes
from tests.ports import free_port
from tests.test_ui_chat import open_page, set_max_new

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("kernels-community", "gemm_4bit_forward", "past_key_values", "Warning:", "warnings.warn", "Traceback",
         "share=True")


def test_the_app_with_the_demo_model_starts_and_answers_quietly(tmp_path, page):
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
        url = f"http://127.0.0.1:{port}/"
        note = next(iter(example_notes().values()))
        open_page(page, url)  # the page as a newcomer uses it: paste, ask, read the answer
        page.get_by_label("Discharge summary").fill(note)
        set_max_new(page, 8)
        page.get_by_label("Instruction", exact=True).fill("What was the diagnosis?")
        page.get_by_role("button", name="Ask").click()
        expect(page.locator("#chat-status")).to_contain_text("tokens/s", timeout=120_000)
        client = Client(url, verbose=False)
        chat, status, _ = client.predict(note, "Free question", "Which drugs was the patient given?", False, "greedy",
                                         8, False, 0.7, 0.9, 1, 1.0, "hold", api_name="/ask")
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
