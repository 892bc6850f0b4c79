"""The chat page in a real browser on a GGUF model run by llama.cpp."""

from __future__ import annotations

import pytest

from asclepius_ui.ui.context import AppContext

from .test_ui_chat import NOTE, bot_text, open_page, set_max_new

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def gguf_url(launch_app, gguf_engine):
    return launch_app(AppContext(engine=gguf_engine))


def test_chat_answers_and_truncates_on_a_gguf(gguf_url, page):
    open_page(page, gguf_url)
    page.get_by_text("Model", exact=True).click()  # the model details are folded away
    assert "GGUF F16 (llama.cpp)" in page.locator("#model-info").inner_text()
    page.get_by_label("Discharge summary").fill(NOTE)
    page.get_by_label("Instruction", exact=True).fill("Summarize the hospital course.")
    page.locator("#token-budget").get_by_text("(fits)").wait_for(timeout=15000)
    set_max_new(page, 200)
    page.get_by_role("button", name="Ask").click()
    page.locator("#chat-status").get_by_text("tokens/s").wait_for(timeout=30000)
    assert "GGUF F16 (llama.cpp)" in bot_text(page)  # (Stop is tested on the engine: this model is too fast)

    long_note = NOTE + "\n".join(f"Day {i}: stable, walked in the hall, ate well." for i in range(300))
    page.get_by_label("Discharge summary").fill(long_note)
    page.locator("#token-budget").get_by_text("over by").wait_for(timeout=15000)
    page.get_by_role("button", name="Truncate note to fit").click()
    page.locator("#chat-status").get_by_text("Cut ").wait_for(timeout=15000)
    cut = page.get_by_label("Text removed from the note").input_value()
    assert cut and page.get_by_label("Discharge summary").input_value() + cut == long_note
    page.locator("#token-budget").get_by_text("(fits)").wait_for(timeout=15000)
    page.get_by_role("button", name="Ask").click()  # the truncated note fits with the same max new tokens
    page.wait_for_function("() => document.querySelectorAll('#answers [data-testid=\"bot\"]').length == 2",
                           timeout=30000)
    page.locator("#chat-status").get_by_text("tokens/s").wait_for(timeout=30000)
