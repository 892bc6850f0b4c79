"""Killing the app server loses no rating the rater saw acknowledged (a real `python app.py`, SIGKILLed)."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from asclepius_ui.storage import open_storage
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
NOTE = "Discharge summary. The patient was admitted with pneumonia and treated with ceftriaxone."


def wait_up(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    start = time.time()
    while time.time() - start < seconds:
        assert proc.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(url + "config", timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the app did not come up")


def start_app(model, db: str, port: int, log: Path) -> subprocess.Popen:
    """``app.py`` with its output in ``log`` (a pipe nobody reads would stall the server once it fills)."""
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, "app.py", "--model", str(model), "--db", db, "--port", str(port)],
                                cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=out,
                                stderr=subprocess.STDOUT, text=True)


def test_sigkill_after_acknowledgement_loses_nothing(tmp_path, tiny_bin_model, page):
    db = f"sqlite:///{tmp_path / 'ratings.db'}"
    port = free_port()
    log = tmp_path / "app.log"
    proc = start_app(tiny_bin_model, db, port, log)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_up(url, proc, log)
        page.goto(url)
        page.get_by_label("Discharge summary", exact=True).fill(NOTE)
        page.get_by_label("Instruction", exact=True).fill("Which antibiotic was given?")
        page.get_by_role("button", name="Ask", exact=True).click()
        page.locator("#chat-status").get_by_text("tokens/s").wait_for(timeout=60_000)
        acknowledged = []
        for score in ("2 - Poor", "4 - Excellent"):  # a rating, then a changed rating that supersedes it
            page.locator("#rate-score").get_by_text(score).click()
            page.locator("#rate-save").click()
            status = page.locator("#rate-status")
            status.get_by_text(f"Saved rating #{len(acknowledged) + 1}").wait_for(timeout=20_000)
            acknowledged.append(status.inner_text())
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hooks, no flush: what was acknowledged must be on disk
        proc.wait(30)
    storage = open_storage(db)
    try:
        rows = storage.ratings(include_superseded=True)
        assert [(r["id"], r["score"], r["supersedes_id"]) for r in rows] == [(1, 2, None), (2, 4, 1)]
        assert rows[1]["note"] == NOTE and rows[1]["instruction"] == "Which antibiotic was given?"
    finally:
        storage.close()

    # The server comes back; the answer still on screen (same page, not reloaded) can be rated again.
    proc = start_app(tiny_bin_model, db, port, log)
    try:
        wait_up(url, proc, log)
        page.locator("#rate-score").get_by_text("3 - Satisfactory").click()
        saved = page.locator("#rate-status").get_by_text("Saved rating #3 (replaces #2)")
        for _ in range(4):  # a click while the page is still reconnecting to the new server goes nowhere: press again
            page.locator("#rate-save").click()
            try:
                saved.wait_for(timeout=15_000)
                break
            except Exception:  # noqa: BLE001 - not acknowledged yet
                continue
        kept = page.evaluate("() => document.querySelector('#rate-kept')?.innerText?.slice(0, 300)")
        shown = page.locator("#answers").inner_text()[:300]
        assert saved.is_visible(), (page.locator("#rate-status").inner_text(), shown, kept, log.read_text()[-3000:])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    storage = open_storage(db)
    try:
        rows = storage.ratings(include_superseded=True)
        assert [(r["id"], r["score"], r["supersedes_id"]) for r in rows][-1] == (3, 3, 2)
        assert rows[-1]["note"] == NOTE and rows[-1]["answer"] == rows[0]["answer"]
    finally:
        storage.close()
