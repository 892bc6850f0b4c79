"""The server as another site, a guesser and a flooder see it: same-origin only, a login throttle that sees every
form, bounded bodies before login, no redirect to a forwarded host, first-party cookies, HSTS over TLS, and pages
that run no inline script and no eval but their own (CSP without 'unsafe-inline'/'unsafe-eval' for scripts)."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from asclepius_ui.auth import LoginThrottle, add_user, load_users
from asclepius_ui.storage import open_storage
from asclepius_ui.ui.context import AppContext
from tests.ports import free_port

PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password"}


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    f = tmp_path_factory.mktemp("sec") / "users.json"
    for user, role in (("alice", "admin"), ("bob", "rater"), ("carol", "rater")):
        add_user(f, user, PASSWORDS[user], role)
    return load_users(f)


@pytest.fixture(scope="module")
def app_url(users, tiny_engine, launch_app, tmp_path_factory):
    storage = open_storage(f"sqlite:///{tmp_path_factory.mktemp('sec-db') / 'r.db'}")  # every page is served
    yield launch_app(AppContext(engine=tiny_engine, users=users, storage=storage), auth=users.check,
                     throttle=LoginThrottle(free=3, address_free=8, base=30.0))
    storage.close()


def request(url: str, method: str = "GET", path: str = "/", body: bytes | None = None,
            headers: dict | None = None, tls: ssl.SSLContext | None = None):
    """One raw request; (status, headers as a dict of lists, body)."""
    u = urllib.parse.urlsplit(url)
    conn = (http.client.HTTPSConnection(u.hostname, u.port, context=tls) if tls
            else http.client.HTTPConnection(u.hostname, u.port))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        got: dict[str, list[str]] = {}
        for k, v in r.getheaders():
            got.setdefault(k.lower(), []).append(v)
        return r.status, got, r.read()
    finally:
        conn.close()


def multipart_login(url: str, user: str, password: str, headers: dict | None = None) -> tuple[int, dict]:
    """POST /login as the browser's login form does (multipart FormData)."""
    b = uuid.uuid4().hex
    body = "".join(f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in (("username", user), ("password", password))) + f"--{b}--\r\n"
    status, got, _ = request(url, "POST", "/login", body.encode(),
                             {"Content-Type": f"multipart/form-data; boundary={b}", **(headers or {})})
    return status, got


def form_login(url: str, user: str, password: str) -> int:
    body = urllib.parse.urlencode({"username": user, "password": password}).encode()
    return request(url, "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})[0]


def test_other_origins_are_refused_and_never_granted(app_url):
    port = urllib.parse.urlsplit(app_url).port
    for origin in (f"http://localhost:{port + 1}", "http://wiki.ward.test", "null", f"http://127.0.0.1:{port}.evil"):
        for method, path in (("GET", "/config"), ("POST", "/gradio_api/queue/join"), ("OPTIONS", "/config")):
            status, headers, _ = request(app_url, method, path, b"{}" if method == "POST" else None,
                                         {"Origin": origin, "Access-Control-Request-Method": "POST"})
            assert status == 403, (origin, method, path, status)
            assert not [h for h in headers if h.startswith("access-control-")], headers
    status, headers, _ = request(app_url, "GET", "/config", headers={"Origin": f"http://127.0.0.1:{port}"})
    assert status in (200, 401) and not [h for h in headers if h.startswith("access-control-")]
    assert request(app_url, "GET", "/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
                   )[0] == 403
    assert request(app_url, "GET", "/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
                   )[0] == 200  # a link from another site still opens the page (without the session cookie)


def test_the_session_cookie_is_first_party_only(app_url):
    status, headers = multipart_login(app_url, "carol", PASSWORDS["carol"])
    assert status == 200
    cookies = headers["set-cookie"]
    assert len(cookies) == 2 and all("samesite=strict" in c.lower() and "samesite=none" not in c.lower()
                                     for c in cookies)


def test_bodies_are_bounded_before_login(app_url):
    big = b"{" + b" " * 200_000 + b"}"
    status, _, body = request(app_url, "POST", "/gradio_api/queue/join", big, {"Content-Type": "application/json"})
    assert status == 413 and b"too large" in body
    status, _, _ = request(app_url, "POST", "/login", b"username=" + b"x" * 100_000,
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413

    # Chunked, without a Content-Length: cut off at the limit, never read to the end.
    def chunks():
        for _ in range(50):
            yield b" " * 65536

    u = urllib.parse.urlsplit(app_url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    try:
        conn.request("POST", "/gradio_api/queue/join", body=chunks(), encode_chunked=True,
                     headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 413
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading: also refused
    finally:
        conn.close()


def test_logout_never_redirects_to_a_forwarded_host(app_url):
    status, headers, _ = request(app_url, "GET", "/logout", headers={"X-Forwarded-Host": "evil.test"})
    assert status in (302, 307) and "evil.test" not in headers["location"][0]


def test_framework_errors_do_not_show_python_internals(app_url):
    status, headers = multipart_login(app_url, "alice", PASSWORDS["alice"])
    cookie = "; ".join(c.split(";")[0] for c in headers["set-cookie"])
    status, _, body = request(app_url, "POST", "/gradio_api/run/ask", json.dumps({"data": [1]}).encode(),
                              {"Content-Type": "application/json", "Cookie": cookie})
    assert status >= 400 and b"object at 0x" not in body and b"gradio.components" not in body, body[:300]


def test_hsts_and_secure_cookies_over_tls(tmp_path, users, tiny_engine, launch_app):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    url = launch_app(AppContext(engine=tiny_engine, users=users), auth=users.check, ssl_certfile=str(cert),
                     ssl_keyfile=str(key)).replace("http://", "https://")
    tls = ssl.create_default_context(cafile=str(cert))
    tls.check_hostname = False
    status, headers, _ = request(url, "GET", "/", tls=tls)
    assert status == 200 and headers["strict-transport-security"][0].startswith("max-age=")
    body = urllib.parse.urlencode({"username": "carol", "password": PASSWORDS["carol"]}).encode()
    status, headers, _ = request(url, "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"},
                                 tls=tls)
    assert status == 200
    assert all("; secure" in c.lower() and "samesite=strict" in c.lower() for c in headers["set-cookie"])


ATTACK = """<!doctype html><title>wiki</title><pre id=out></pre><script>
const app = %s, out = [];
async function probe(path, init) {
  try { const r = await fetch(app + path, Object.assign({credentials: "include"}, init));
        out.push(path + " READ " + r.status + " " + (await r.text()).length); }
  catch (e) { out.push(path + " BLOCKED"); }
}
(async () => {
  await probe("config");
  await probe("gradio_api/info");
  await probe("gradio_api/queue/join", {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify({data: [], fn_index: 0, session_hash: "x"})});
  document.getElementById("out").textContent = out.join("\\n");
  document.title = "done";
})();
</script>"""


def test_a_page_on_another_host_name_reads_nothing(app_url, browser):
    """The app on 127.0.0.1, another page on "localhost" (another site to the browser), one logged-in browser."""
    page_html = (ATTACK % json.dumps(app_url)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page_html)))
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args):
            pass

    wiki = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=wiki.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(app_url)
        page.get_by_label("username").fill("alice")
        page.get_by_label("password").fill(PASSWORDS["alice"])
        page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="Chat").wait_for(timeout=30_000)
        own = page.evaluate("fetch('config').then(r => r.status)")
        assert own == 200  # the app's own page reads it
        attacker = context.new_page()
        attacker.goto(f"http://localhost:{wiki.server_port}/")
        attacker.wait_for_function("document.title === 'done'", timeout=20_000)
        lines = attacker.locator("#out").inner_text().splitlines()
        assert len(lines) == 3 and all(line.endswith("BLOCKED") for line in lines), lines
    finally:
        context.close()
        wiki.shutdown()


# Every Content-Security-Policy violation the page reports, recorded from before its first script runs.
VIOLATIONS = """window.__csp = []; document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));"""


def script_src(policy: str) -> str:
    return next(d for d in policy.split(";") if d.strip().startswith("script-src")).strip()


def test_pages_run_no_inline_script_and_no_eval_but_their_own(app_url, browser):
    for path in ("/", "/asclepius.js", "/config"):
        policy = request(app_url, path=path)[1]["content-security-policy"][0]
        assert "'unsafe-inline'" not in script_src(policy) and "'unsafe-eval'" not in script_src(policy), policy
    page_policy = request(app_url)[1]["content-security-policy"][0]
    assert "'sha256-" in script_src(page_policy)  # the app's page allows exactly its own inline scripts, by hash
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(VIOLATIONS)
        page.goto(app_url)
        page.get_by_label("username").wait_for(timeout=30_000)
        page.wait_for_function("() => document.title === 'Asclepius Studio'")  # asclepius.js ran on the login page
        assert page.evaluate("window.__csp") == []
        page.get_by_label("username").fill("alice")
        page.get_by_label("password").fill(PASSWORDS["alice"])
        page.get_by_role("button", name="Login").click()
        for tab in ("Chat", "Compare", "Batch", "Study", "Admin", "Analysis"):
            page.get_by_role("tab", name=tab).click()
            page.get_by_role("tab", name=tab, selected=True).wait_for(timeout=30_000)
            page.wait_for_timeout(300)  # the tab's components mount
            assert page.evaluate("window.__csp") == [], tab
        # The policy is enforced: eval and an injected inline script are refused (and reported).
        # (from a timer: code Playwright evaluates itself may eval)
        page.evaluate("""() => setTimeout(() => {
            try { window.__eval = new Function('return "ran"')(); } catch (e) { window.__eval = e.name; } })""")
        page.wait_for_function("() => window.__eval !== undefined")
        assert page.evaluate("window.__eval") == "EvalError"
        page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';
                                 document.head.append(s); }""")
        page.wait_for_function("() => window.__csp.length >= 2")
        assert page.evaluate("window.__ran") is None
    finally:
        context.close()


def test_no_component_or_event_needs_eval(app_url):
    """What the browser would run through ``Function``: a ``gr.HTML`` (its template, its ``js_on_load``) or an
    event's ``js``, on any page, shown or hidden (the browser test above sees only what it mounts)."""
    status, got, _ = request(app_url, "POST", "/login", urllib.parse.urlencode(
        {"username": "alice", "password": PASSWORDS["alice"]}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    cookies = "; ".join(c.split(";")[0] for c in got["set-cookie"])
    config = json.loads(request(app_url, path="/config", headers={"Cookie": cookies})[2])
    types = {c["type"] for c in config["components"]}
    assert {"tabs", "markdown", "textbox"} <= types and "html" not in types
    assert [c["id"] for c in config["components"] if c["props"].get("js_on_load")] == []
    assert [d.get("js") for d in config["dependencies"] if d.get("js")] == []


def test_no_server_path_reaches_the_browser(app_url):
    """Uploads are answered, and files served, under a stand-in for the folders that hold them (Gradio names files
    by their server path); the page and its config name no server folder either."""
    from asclepius_ui.ui.path_mask import folders

    status, got, _ = request(app_url, "POST", "/login", urllib.parse.urlencode(
        {"username": "alice", "password": PASSWORDS["alice"]}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"})
    cookie = {"Cookie": "; ".join(c.split(";")[0] for c in got["set-cookie"])}
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="files"; filename="notes.csv"\r\n'
            f"Content-Type: text/csv\r\n\r\nid,note\r\n1,SECRET-PHI\r\n--{b}--\r\n").encode()
    status, _, answer = request(app_url, "POST", "/gradio_api/upload", body,
                                {"Content-Type": f"multipart/form-data; boundary={b}", **cookie})
    [shown] = json.loads(answer)
    assert status == 200 and shown.startswith("/asclepius-") and shown.endswith("/notes.csv")
    status, _, served = request(app_url, path=f"/gradio_api/file={shown}", headers=cookie)
    assert status == 200 and served == b"id,note\r\n1,SECRET-PHI"  # the stand-in maps back
    pages = [request(app_url, path=p, headers=cookie)[2] for p in ("/", "/config")]
    for real, _ in folders():
        assert all(real not in page for page in (answer, *pages)), real


# Last: it leaves this address throttled.
def test_the_throttle_sees_multipart_logins_per_user_and_address(app_url):
    # A logged-in rater guessing the admin's password through the browser's (multipart) form is throttled ...
    assert multipart_login(app_url, "bob", PASSWORDS["bob"])[0] == 200
    codes = [multipart_login(app_url, "alice", f"guess-{k}")[0] for k in range(5)]
    assert codes == [400, 400, 400, 429, 429], codes
    # ... and even the right password now waits (the user's count), while colleagues behind the same address,
    # with their own passwords, log in: one user's failures never lock out another.
    assert multipart_login(app_url, "alice", PASSWORDS["alice"])[0] == 429
    assert form_login(app_url, "bob", PASSWORDS["bob"]) == 200
    # bob's success cleared only bob's count: the address keeps its failures, and X-Forwarded-For from a peer
    # that is not a configured proxy does not choose the address (carol's 3 failures add to the same address).
    for k in range(3):
        assert multipart_login(app_url, "carol", f"bad-{k}", {"X-Forwarded-For": f"10.9.8.{k}"})[0] == 400
    for k in range(2):  # the address's 7th and 8th failure
        assert multipart_login(app_url, "bob", f"bad-{k}", {"X-Forwarded-For": f"10.1.1.{k}"})[0] == 400
    status, headers = multipart_login(app_url, "bob", PASSWORDS["bob"], {"X-Forwarded-For": "10.2.2.2"})
    assert status == 429 and int(headers["retry-after"][0]) > 0
