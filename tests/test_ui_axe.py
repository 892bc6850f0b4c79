"""Accessibility: axe-core (shipped inside axe-playwright-python) finds nothing critical or serious on the login page
and on every page of the app, in the Debian Chromium, as an administrator who sees every page."""

from __future__ import annotations

import pytest

from asclepius_ui.auth import add_user, load_users
from asclepius_ui.storage import open_storage
from asclepius_ui.ui.app import PAGES
from asclepius_ui.ui.context import AppContext
from tests.test_eval_report import build_ratings_db

PASSWORD = "axe-admin-password"
BAD = ("critical", "serious")


@pytest.fixture(scope="module")
def axe_app(tmp_path_factory, tiny_engine, launch_app):
    d = tmp_path_factory.mktemp("ui-axe")
    add_user(d / "users.json", "alice", PASSWORD, "admin")
    users = load_users(d / "users.json")
    storage = open_storage(build_ratings_db(d))  # ratings, so Analysis shows its tables and figure gallery
    yield launch_app(AppContext(engine=tiny_engine, storage=storage, users=users), auth=users.check)
    storage.close()


def serious(page) -> list[str]:
    """Each critical or serious axe violation on ``page`` as 'impact rule-id (nodes): first target'; prints the
    number of failing nodes per impact (all impacts) for the record (pytest -s)."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    counts: dict[str, int] = {}
    for v in found:
        counts[v["impact"]] = counts.get(v["impact"], 0) + len(v["nodes"])
    print(f"axe nodes by impact: {dict(sorted(counts.items()))} rules: {sorted(v['id'] for v in found)}")
    return [f"{v['impact']} {v['id']} ({len(v['nodes'])}): {v['nodes'][0]['target']}"
            for v in found if v["impact"] in BAD]


def test_no_critical_or_serious_violation_on_the_login_page_and_every_page(axe_app, page):
    page.goto(axe_app)
    page.get_by_label("username").wait_for(timeout=30_000)
    report = {"login": serious(page)}
    page.get_by_label("username").fill("alice")
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    for title, *_ in PAGES:
        tab = page.get_by_role("tab", name=title)
        tab.wait_for(timeout=30_000)
        tab.click()
        page.wait_for_function("t => [...document.querySelectorAll('[role=tab][aria-selected=true]')]"
                               ".some(e => e.innerText.trim() === t)", arg=title, timeout=10_000)
        page.wait_for_timeout(300)  # the tab's own load event fills its components
        if title == "Analysis":
            page.locator("#analysis-figures img").first.wait_for(timeout=90_000)
        report[title] = serious(page)
    for name, found in report.items():  # the counts per page, for the record (pytest -s)
        print(f"axe {name}: {len(found)} critical/serious rule(s) {found}")
    assert all(not v for v in report.values()), report
