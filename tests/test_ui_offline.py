"""Nothing from another host, ever: every page shows notes, instructions, study items, comments and model answers
that try to load images, SVG, CSS and media from an outside host, and the browser makes no request off loopback.

Every request the page makes is recorded; any to another host is aborted (nothing leaves) and fails the test.
The rendered DOM is also checked, so a load refused only by the Content-Security-Policy still counts as a leak, and
so does any violation of the policy the page reports (it allows no inline script and no eval, so that also shows
every page works without them).
"""

from __future__ import annotations

import json
import re
import urllib.request
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from asclepius_ui.engines.openai import RemoteEngine, RemoteOptions
from asclepius_ui.phi_guard import note_key
from asclepius_ui.storage import new_uid, open_storage
from asclepius_ui.ui.common import html_block, safe_html, safe_markdown
from asclepius_ui.ui.context import AppContext
from tests.openai_server import OpenAIServer

OUT = "outside.test"
PAYLOAD = (f"![x](http://{OUT}/md.png) <img src=http://{OUT}/img.png> "
           f"<svg><image href='http://{OUT}/svg.png'/></svg> <div style=\"background:url(http://{OUT}/css.png)\">c"
           f"</div> <video src=http://{OUT}/v.mp4 poster=http://{OUT}/p.png></video> <audio src=//{OUT}/a.mp3>"
           f"</audio> <link rel=stylesheet href=http://{OUT}/s.css> <iframe src=http://{OUT}/f></iframe> "
           f"<style>@import url(http://{OUT}/i.css)</style> [ref]: http://{OUT}/ref.png ![y][ref]")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Any element attribute that would make the browser fetch from the outside host once rendered.
LEAKS = f"""() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes]
  .filter(a => ['src', 'srcset', 'poster', 'data', 'style', 'background'].includes(a.name) ||
               (a.name.endsWith('href') && e.tagName.toLowerCase() !== 'a'))
  .filter(a => a.value.includes('{OUT}')).map(a => e.tagName + ' ' + a.name + '=' + a.value))"""


def test_safe_rendering_helpers_keep_text_and_drop_loads():
    md = safe_markdown(PAYLOAD)
    assert "<img" not in md and "<svg" not in md and "<video" not in md
    assert md.count("![") == md.count("\\![") == 2  # image syntax escaped: a link at most, never loaded
    assert "&lt;img src=http://outside.test/img.png&gt;" in md  # shown as text, as written
    html = safe_html(PAYLOAD + ' <a href="http://outside.test/x">link</a> <b>bold</b>')
    for tag in ("<img", "<svg", "<image", "<video", "<audio", "<link", "<iframe", "<style", "style="):
        assert tag not in html
    assert "<b>bold</b>" in html and 'rel="noopener noreferrer nofollow"' in html


def test_server_built_html_stays_one_raw_block_through_markdown():
    # A note's blank line would end a raw HTML block and let Markdown read the rest: every value is written on one
    # line instead, the same text in HTML; attributes the page's script reads are kept.
    box = html_block('<div data-draft-key="k">x</div>')
    assert box.value == '<div data-draft-key="k">x</div>'
    assert box.postprocess("<pre>Line *one*\r\n\n    indented</pre>") == "<pre>Line *one*&#10;&#10;    indented</pre>"
    assert box.latex_delimiters == [] and box.sanitize_html is False


def _study_file(path):
    rows = [{"id": f"item-{k}", "note": f"Note {k} {PAYLOAD}", "question": f"Question {k}? {PAYLOAD}",
             "task": "Question answering", "answer_plain": f"Plain answer {k} {PAYLOAD}",
             f"answer_evil<img src=http://{OUT}/model.png>": f"Evil answer {k} {PAYLOAD}"} for k in range(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def guarded(browser):
    """A page whose every request is recorded; requests to another host are aborted and listed in ``outside``."""
    context = browser.new_context()
    outside: list[str] = []

    def route(r):
        host = urlparse(r.request.url).hostname or ""
        if r.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.add_init_script("""window.__csp = []; document.addEventListener('securitypolicyviolation',
      e => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));""")
    page.outside = outside
    yield page
    context.close()


def _no_leak(page) -> None:
    assert page.outside == []
    assert page.evaluate(LEAKS) == []
    assert page.evaluate("window.__csp") == []


def test_no_page_loads_anything_from_another_host(tmp_path, tiny_engine, launch_app, guarded):
    page = guarded
    with OpenAIServer(answer=f"Remote answer {PAYLOAD}") as srv:
        remote = RemoteEngine(RemoteOptions(model="remote-gpt", base_url=srv.base_url, api_key="sk-test",
                                            api_mode="chat"))
        st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
        st.save_rating(snapshot=dict(note=PAYLOAD, instruction=PAYLOAD, answer=PAYLOAD, prompt=PAYLOAD,
                                     model_id=f"model<img src=http://{OUT}/m.png>"), score=2, rater="r",
                       uid=new_uid(), comment=PAYLOAD)
        ctx = AppContext(engine=remote, contenders={"tiny": tiny_engine}, storage=st)
        url = launch_app(ctx)
        headers = urllib.request.urlopen(url).headers
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert "img-src 'self' data: blob:" in headers["Content-Security-Policy"]
        assert "unsafe" not in headers["Content-Security-Policy"].split("script-src")[1].split(";")[0]

        # Chat: the note, the instruction and the model's answer all carry outside loads.
        page.goto(url)
        page.get_by_label("Discharge summary", exact=True).filter(visible=True).first.fill(f"Note {PAYLOAD}")
        page.get_by_label("Instruction", exact=True).filter(visible=True).first.fill(f"Why? {PAYLOAD}")
        # The endpoint's privacy guard names the note it asks about: wait for this note's, then confirm it.
        expect(page.locator("#chat-guard")).to_contain_text(f"fingerprint {note_key(f'Note {PAYLOAD}')[:8]}")
        page.locator("#chat-guard").get_by_text("Send this note as it is").click()
        page.get_by_role("button", name="Ask", exact=True).click()
        page.locator("#chat-status").get_by_text("tokens/s").wait_for(timeout=60_000)
        assert "Remote answer" in page.locator("#answers").inner_text()
        _no_leak(page)

        # Compare: both answers shown side by side.
        page.get_by_role("tab", name="Compare").click()
        page.locator("#cmp-note textarea").fill(f"Note {PAYLOAD}")
        page.locator("#compare-page").get_by_label("Instruction", exact=True).fill("Why?")  # the tiny context
        page.locator("#cmp-max-new input[type=number]").fill("8")
        page.locator("#cmp-max-new input[type=number]").press("Enter")
        expect(page.locator("#cmp-guard")).to_contain_text(f"fingerprint {note_key(f'Note {PAYLOAD}')[:8]}")
        page.locator("#cmp-guard").get_by_text("Send this note as it is").click()
        page.locator("#cmp-run").click()
        status = page.locator("#cmp-status")
        status.get_by_text("Both answers are ready").or_(status.locator(".error-box")).wait_for(timeout=60_000)
        assert "ready" in status.inner_text()
        page.locator("#cmp-vote-tie").click()
        page.locator("#cmp-reveal #cmp-name-a").wait_for(timeout=20_000)
        _no_leak(page)

        # Batch: a notes file with outside loads, read back as its preview.
        page.get_by_role("tab", name="Batch").click()
        notes = tmp_path / "notes.csv"
        notes.write_text(f'note,question\n"Note {PAYLOAD.replace(chr(34), chr(39))}",Why?\n')
        page.locator("#batch-file input[type=file]").set_input_files(str(notes))
        expect(page.locator("#batch-info")).to_contain_text("1 rows", timeout=15_000)
        _no_leak(page)

        # Admin: import a study whose cells and model names carry outside loads; progress and means tables.
        page.get_by_role("tab", name="Admin").click()
        page.locator("#admin-file input[type=file]").set_input_files(str(_study_file(tmp_path / "evil.jsonl")))
        page.locator("#admin-overlap input").fill("1")
        page.locator("#admin-import").click()
        page.locator("#admin-import-status").get_by_text("Imported study").wait_for(timeout=20_000)
        _no_leak(page)

        # Study: the rater sees the imported note, question and answers.
        page.reload()
        page.get_by_role("tab", name="Study").click()
        expect(page.locator("#study-pick input")).to_have_value(re.compile("evil"), timeout=20_000)
        page.locator("#study-start").click()
        page.locator("#study-question").get_by_text("Question:").wait_for(timeout=20_000)
        assert "<img" in page.locator("#study-question").inner_text()  # shown as the text it is
        for lab in "AB":
            page.locator(f"#study-score-{lab}").get_by_text("3 - Satisfactory").click()
            page.locator(f"#study-comment-{lab} textarea").fill(PAYLOAD)
        page.locator("#study-submit").click()
        page.locator("#study-status").get_by_text("Saved item").wait_for(timeout=20_000)
        _no_leak(page)

        page.get_by_role("tab", name="Admin").click()
        page.locator("#admin-refresh").click()
        page.locator("#admin-means").get_by_text("plain").wait_for(timeout=20_000)
        _no_leak(page)

        # Analysis: tables and figures from all of it.
        page.get_by_role("tab", name="Analysis").click()
        page.locator("#analysis-bootstrap input").fill("100")
        page.locator("#analysis-refresh").click()
        page.locator("#analysis-status").get_by_text("Computed from").wait_for(timeout=120_000)
        _no_leak(page)
        st.close()


def test_unknown_host_headers_are_refused(tiny_engine, launch_app):
    url = launch_app(AppContext(engine=tiny_engine))
    ok = urllib.request.urlopen(urllib.request.Request(url, headers={"Host": "localhost"}))
    assert ok.status == 200
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Host": "rebind.attacker.test"}))
    assert err.value.code == 421
    assert "default-src 'self'" in err.value.headers["Content-Security-Policy"]
