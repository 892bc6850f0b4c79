"""The admin Analysis tab in a real Gradio server and a real browser, over a real SQLite ratings DB."""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from asclepius_ui.storage import open_storage
from asclepius_ui.ui.context import AppContext

from .test_eval_report import JUDGED, build_ratings_db

MACHINE_PATH = "/home/someone/assets/demo-model"


@pytest.fixture(scope="module")
def analysis_url(tmp_path_factory, tiny_engine, launch_app) -> str:
    storage = open_storage(build_ratings_db(tmp_path_factory.mktemp("ui-db")))
    # a chat rating stored before model names were made honest: its model is a machine path
    storage.save_rating(snapshot={"model_id": MACHINE_PATH, "note": "n", "instruction": "q", "task": "qa",
                                  "answer": "y"}, score=2, rater="e2", uid="path-named")
    return launch_app(AppContext(engine=tiny_engine, storage=storage))


def test_opening_the_tab_computes_then_refresh_adds_judged_files(page, analysis_url, tmp_path):
    from playwright.sync_api import expect

    page.goto(analysis_url)
    page.get_by_role("tab", name="Analysis").click()
    expect(page.locator("#analysis-status")).to_contain_text("Computed from", timeout=60_000)  # on open, no click
    expect(page.locator("#analysis-means")).to_contain_text("Expert ratings (studies)")
    # A figure that means little says so: the two experts share fewer than 20 items; the page gives the number,
    # the warning and the intervals where they exist.
    status = page.locator("#analysis-status")
    expect(status).to_contain_text("Agreement rests on as few as 12 shared item(s)")
    expect(status).to_contain_text("(fewer than 20)")
    agreement = page.locator("#analysis-agreement")
    expect(agreement).to_contain_text("shared items")
    expect(agreement).to_contain_text("only 12 shared item(s): too few to mean much (fewer than 20)")
    cells = agreement.inner_text()
    assert "95% CI" in cells and re.search(r"-?\d\.\d+ – -?\d\.\d+", cells), cells  # intervals shown
    # Honest model names: the path-named model is shown (and plotted, and reported) by its folder's name.
    means = page.locator("#analysis-means")
    expect(means).to_contain_text("demo-model")
    assert "/home/" not in means.inner_text()
    page.locator("#analysis-judged input[type=file]").set_input_files(str(JUDGED))
    page.locator("#analysis-refresh").click()
    status = page.locator("#analysis-status")
    expect(status).to_contain_text("LLM judge", timeout=60_000)
    assert "LLM judge" in status.inner_text() and "Expert ratings (studies): 24 ratings" in status.inner_text()
    means = page.locator("#analysis-means")
    assert "asclepius" in means.inner_text() and "Expert ratings (studies)" in means.inner_text()
    assert "Krippendorff" in page.locator("#analysis-agreement").inner_text()
    assert "BT strength" in page.locator("#analysis-pairwise").inner_text()
    page.locator("#analysis-means-plot img").wait_for()
    figures = page.locator("#analysis-figures img")
    figures.first.wait_for()
    assert figures.count() >= 8
    page.screenshot(path=str(tmp_path / "analysis.png"), full_page=True)
    sources = [figures.nth(i).get_attribute("src") for i in range(figures.count())]
    sources.append(page.locator("#analysis-means-plot img").get_attribute("src"))
    for src in sources:  # every figure is served as a real PNG
        body = page.request.get(src).body()
        assert body[:8] == b"\x89PNG\r\n\x1a\n" and len(body) > 2000
    assert "analysis-report" in page.locator("#analysis-download").inner_text()
    report = page.request.get(page.locator("#analysis-download a").first.get_attribute("href")).body()
    with zipfile.ZipFile(io.BytesIO(report)) as z:  # the figures' data: the report's tables, as the page offers them
        texts = {n: z.read(n).decode() for n in z.namelist() if n.endswith((".md", ".csv", ".json"))}
    assert texts and any("demo-model" in t for t in texts.values())
    assert not [n for n, t in texts.items() if "/home/" in t], texts.keys()


def test_empty_database_says_no_ratings_yet_and_shows_no_empty_tables(page, tmp_path_factory, tiny_engine,
                                                                       launch_app):
    from playwright.sync_api import expect

    storage = open_storage(f"sqlite:///{tmp_path_factory.mktemp('empty-db') / 'r.db'}")
    page.goto(launch_app(AppContext(engine=tiny_engine, storage=storage)))
    page.get_by_role("tab", name="Analysis").click()
    expect(page.locator("#analysis-status")).to_contain_text("No ratings yet")
    expect(page.locator("#analysis-means")).to_be_hidden()
    expect(page.locator("#analysis-agreement")).to_be_hidden()
