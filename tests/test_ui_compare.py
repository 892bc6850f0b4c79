"""Blind A/B compare: random sides, names hidden until the vote, two local models and a local vs a remote API."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from playwright.sync_api import expect
from scipy.stats import binomtest

from asclepius_ui.engines import LoadOptions, load_engine
from asclepius_ui.phi_guard import note_key
from asclepius_ui.rating_logic import assign_sides, draw_pair
from asclepius_ui.storage import open_storage
from asclepius_ui.ui.context import AppContext
from tests.openai_server import OpenAIServer

NOTE = "Discharge summary. The patient was admitted with pneumonia and treated with antibiotics."


def test_sides_are_a_fair_coin_over_many_trials():
    n = 400
    swapped = sum(assign_sides("x", "y").swapped for _ in range(n))  # the app's own (system) randomness
    assert 0 < swapped < n
    assert binomtest(swapped, n, 0.5).pvalue > 1e-4  # fails by chance about once in 10,000 runs
    s = assign_sides("x", "y", random.Random(3))
    assert {s.a, s.b} == {"x", "y"} and (s.a == "y") == s.swapped
    pairs = Counter(frozenset(draw_pair(["a", "b", "c"])) for _ in range(300))
    assert len(pairs) == 3 and min(pairs.values()) > 50


def test_one_engine_explains_how_to_add_a_contender(tiny_engine, launch_app, page, tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    page.goto(launch_app(AppContext(engine=tiny_engine, storage=st)))
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-need-two")).to_contain_text("--compare-model")
    expect(page.locator("#compare-need-two")).to_contain_text("--remote-model")


def _trial(page, instruction: str, confirm: str | None = None) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.locator("#cmp-note textarea").fill(NOTE)
    if confirm:  # a remote contender: the privacy guard needs this note confirmed
        expect(page.locator("#cmp-guard")).to_contain_text(f"fingerprint {note_key(NOTE)[:8]}")
        page.locator("#cmp-guard").get_by_text(confirm).click()
    page.locator("#cmp-instruction textarea").fill(instruction)
    page.locator("#cmp-max-new input[type=number]").fill("24")
    page.locator("#cmp-max-new input[type=number]").press("Enter")
    page.locator("#cmp-run").click()
    expect(page.locator("#cmp-status")).to_contain_text("Both answers are ready", timeout=90_000)


@pytest.fixture(scope="module")
def two_locals(tmp_path_factory, tiny_engine, tiny_safetensors_model):
    other = load_engine(LoadOptions(str(tiny_safetensors_model), precision="fp32", device="cpu"))
    st = open_storage(f"sqlite:///{tmp_path_factory.mktemp('cmp') / 'r.db'}")
    yield AppContext(engine=tiny_engine, contenders={other.model_id: other}, storage=st, max_concurrent=2)
    st.close()


def test_two_local_models_names_hidden_until_the_vote(two_locals, launch_app, page):
    ctx = two_locals
    names = list(ctx.all_engines())
    page.goto(launch_app(ctx))
    page.get_by_role("tab", name="Compare").click()
    assert page.locator("#cmp-vote-A").is_disabled()  # no vote before both answers exist
    _trial(page, "Why was the patient admitted?")
    # both contenders read the pasted note ahead of the question; the line names neither
    expect(page.locator("#cmp-prefill")).to_contain_text("Note ready", timeout=60_000)
    before = page.locator("#compare-page").inner_text()
    assert not any(n in before or n.rsplit("/", 1)[-1] in before for n in names)
    assert page.locator("#cmp-vote-A").is_enabled() and page.locator("#cmp-vote-tie").is_enabled()
    page.locator("#cmp-score-b").get_by_text("2 - Poor").click()
    page.locator("#cmp-vote-B").click()
    expect(page.locator("#cmp-reveal #cmp-name-a")).to_be_visible(timeout=20_000)
    shown = (page.locator("#cmp-name-a").inner_text(), page.locator("#cmp-name-b").inner_text())
    assert sorted(shown) == sorted(names)
    assert page.locator("#cmp-vote-A").is_disabled()  # one vote per trial
    [c] = ctx.storage.comparisons()
    assert (c["model_a"], c["model_b"], c["winner"], c["winner_model"]) == (*shown, "B", shown[1])
    assert c["swapped"] == (shown[0] != names[0]) and c["rater"] == "local" and c["instruction"].startswith("Why")
    assert c["settings"]["max_new_tokens"] == 24
    side = [r for r in ctx.storage.ratings() if r["comparison_id"] == c["id"]]
    assert [(r["side"], r["score"], r["model_id"], r["answer"]) for r in side] == [("B", 2, shown[1], c["answer_b"])]
    assert ctx.storage.dpo_pairs()[0]["chosen"] == c["answer_b"]


def test_local_model_against_a_remote_openai_compatible_api(tiny_engine, launch_app, page, tmp_path):
    from asclepius_ui.engines.openai import RemoteEngine, RemoteOptions

    with OpenAIServer(answer="Remote says: community acquired pneumonia, treated with ceftriaxone.") as srv:
        remote = RemoteEngine(RemoteOptions(model="remote-gpt", base_url=srv.base_url, api_key="sk-test",
                                            api_mode="chat"))
        st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
        ctx = AppContext(engine=tiny_engine, contenders={"remote-gpt (remote)": remote}, storage=st)
        page.goto(launch_app(ctx))
        _trial(page, "What was the diagnosis?", confirm="Send this note as it is")
        answers = [page.locator(f"#cmp-answer-{s} textarea").input_value() for s in "ab"]
        assert sum("ceftriaxone" in a for a in answers) == 1
        assert "remote-gpt" not in page.locator("#compare-page").inner_text()
        page.locator("#cmp-vote-tie").click()
        expect(page.locator("#cmp-reveal #cmp-name-a")).to_be_visible(timeout=20_000)
        assert "remote-gpt (remote)" in page.locator("#cmp-reveal").inner_text()
        assert srv.requests and srv.requests[-1]["stream"] is True and srv.requests[-1]["model"] == "remote-gpt"
        assert NOTE in srv.requests[-1]["messages"][0]["content"]
        [c] = st.comparisons()
        remote_side = "a" if c["model_a"] == "remote-gpt (remote)" else "b"
        assert "ceftriaxone" in c[f"answer_{remote_side}"] and c["winner"] == "tie" and st.dpo_pairs() == []
        st.close()


def test_privacy_guard_holds_a_synthea_style_note_until_confirmed(tiny_engine, launch_app, page, tmp_path):
    from asclepius_ui.engines.openai import RemoteEngine, RemoteOptions
    from tests.test_phi_guard import synthea_note

    note, ids = synthea_note(random.Random(11))
    with OpenAIServer(answer="Pneumonia, treated with ceftriaxone.") as srv:
        remote = RemoteEngine(RemoteOptions(model="remote-gpt", base_url=srv.base_url, api_key="sk-test",
                                            api_mode="chat"))
        st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
        page.goto(launch_app(AppContext(engine=tiny_engine, contenders={"remote-gpt (remote)": remote}, storage=st)))
        page.get_by_role("tab", name="Compare").click()
        expect(page.locator("#cmp-guard-about")).to_contain_text("cannot")  # says what it cannot detect
        page.locator("#cmp-note textarea").fill(note)
        expect(page.locator("#cmp-guard")).to_contain_text(f"fingerprint {note_key(note)[:8]}")
        page.locator("#cmp-instruction textarea").fill("What was the diagnosis?")
        page.locator("#cmp-max-new input[type=number]").fill("8")
        page.locator("#cmp-max-new input[type=number]").press("Enter")
        page.locator("#cmp-run").click()
        status = page.locator("#cmp-status")
        expect(status).to_contain_text("Nothing was sent", timeout=60_000)
        expect(status).to_contain_text("PERSON_LABELLED")
        assert srv.requests == []
        page.locator("#cmp-guard").get_by_text("Send a redacted copy").click()
        page.locator("#cmp-run").click()
        expect(status).to_contain_text("Both answers are ready", timeout=90_000)
        sent = srv.requests[-1]["messages"][0]["content"]
        assert ids["name"] not in sent and ids["ssn"] not in sent and ids["phone"] not in sent
        assert "[PERSON_LABELLED]" in sent and "ceftriaxone 1 g IV daily" in sent
        page.locator("#cmp-note textarea").fill(note + " ")  # a changed note needs a new confirmation
        expect(page.locator("#cmp-guard")).to_contain_text(f"fingerprint {note_key(note + ' ')[:8]}")
        expect(page.locator("#cmp-guard input[value=hold]")).to_be_checked()
        st.close()
