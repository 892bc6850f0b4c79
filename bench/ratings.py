"""Rating writes per second and p50/p99 latency: storage alone, through the app's HTTP API, during a big import.

    python -m bench.ratings                       # storage: SQLite, and PostgreSQL if $ASCLEPIUS_TEST_PG_URL
    python -m bench.ratings --backends sqlite --raters 1,10,50 --writes 40
    python -m bench.ratings --http --raters 50 --interval 2 --seconds 60   # the running app, as the page calls it
    python -m bench.ratings --http --client both --raters 50   # ... and through gradio_client, for comparison
    python -m bench.ratings --import-items 100000             # rating saves while a study imports; Start/Submit cost
    python -m bench.ratings --http --import-items 20000       # HTTP saves while an admin imports through the page

PostgreSQL: the server named by ASCLEPIUS_TEST_PG_URL (a fresh database is made on it).
Every write is a full acknowledged rating (snapshot, idempotency key, commit) as the app makes it; after each run
the number stored is checked against the number acknowledged.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from asclepius_ui.storage import new_uid, open_storage
from asclepius_ui.studies import ParsedStudy, StudyItemIn

ENV = "ASCLEPIUS_TEST_PG_URL"
ROOT = Path(__file__).resolve().parents[1]


def create_database(server_url: str) -> str:
    """A new empty database on the PostgreSQL server at ``server_url``; returns its URL."""
    import psycopg

    name = "bench_" + uuid.uuid4().hex[:12]
    dsn = server_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url.rpartition('/')[0]}/{name}"


def quantiles(latencies: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000

SNAPSHOT = dict(note="Discharge summary. " * 100, task="Question answering",
                instruction="Why was the patient admitted?",
                prompt="PROMPT " * 200, answer="Because of pneumonia. " * 20, model_id="starmpcc/Asclepius-7B",
                model_revision="abc", precision="fp16", template="asclepius", settings={"max_new_tokens": 400},
                started_at="2024-01-01T00:00:00", finished_at="2024-01-01T00:00:05", generation_seconds=5.0,
                new_tokens=120)


@dataclass
class Result:
    backend: str
    raters: int
    writes: int
    seconds: float
    latencies: list[float]

    def line(self) -> str:
        p50, p99 = quantiles(self.latencies)
        return (f"{self.backend:<10} {self.raters:>6} {self.writes:>7} {self.writes / self.seconds:>10.1f} "
                f"{p50:>9.2f} {p99:>9.2f}")


def run(url: str, backend: str, raters: int, writes_per_rater: int) -> Result:
    st = open_storage(url)
    lat: list[list[float]] = [[] for _ in range(raters)]
    barrier = threading.Barrier(raters + 1)

    def rater(i: int) -> None:
        barrier.wait()
        for k in range(writes_per_rater):
            t = time.perf_counter()
            st.save_rating(snapshot=SNAPSHOT, score=1 + k % 4, rater=f"r{i}", uid=new_uid(), comment="bench")
            lat[i].append(time.perf_counter() - t)

    threads = [threading.Thread(target=rater, args=(i,)) for i in range(raters)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    n = len(st.ratings(include_superseded=True))
    st.close()
    assert n == raters * writes_per_rater, f"lost or duplicated writes: {n}"
    return Result(backend, raters, n, seconds, [x for xs in lat for x in xs])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_app(url: str) -> tuple[subprocess.Popen, str]:
    """A real ``python app.py`` (demo model) on a free loopback port, once it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--db", url, "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    app = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(app + "config", timeout=2).close()
            return proc, app
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start")


def _page_caller(app: str):
    """One rater's tab: a kept-alive HTTP connection posting to ``/gradio_api/run/rate``, the route the page itself
    uses for this unqueued event (the rating form's State input travels as null, as the page sends it)."""
    import httpx

    http = httpx.Client(base_url=app, timeout=60)
    session = uuid.uuid4().hex

    def call(score: int, kept: dict) -> str:
        r = http.post("gradio_api/run/rate", json={"data": [None, 0, score, [], "bench", kept],
                                                   "session_hash": session})
        r.raise_for_status()
        return r.json()["data"][0]
    return call


def _gradio_caller(app: str):
    """One rater through ``gradio_client`` (it joins the queue and reads an SSE stream; each call opens new HTTP
    clients, whose set-up is most of its cost on a small machine)."""
    from gradio_client import Client

    client = Client(app, verbose=False)

    def call(score: int, kept: dict) -> str:
        return client.predict(0, score, [], "bench", kept, api_name="/rate")[0]
    return call


def _timed_save(st, call, started_at: str, score: int, errors: list[str]) -> tuple[str, float]:
    """One rater's save of a fresh answer's rating through ``call``: (the reply, seconds it took). A call that
    raises (a timeout) is a result here: not acknowledged, its error's name kept in ``errors``."""
    from asclepius_ui.ui.rating_widget import keep_state

    kept = keep_state(st, [dict(SNAPSHOT, started_at=started_at)], new_uid(), {})
    t = time.perf_counter()
    try:
        msg = call(score, kept)
    except Exception as exc:  # noqa: BLE001
        errors.append(type(exc).__name__)
        msg = ""
    return msg, time.perf_counter() - t


def run_http(url: str, raters: int, interval: float, seconds: float, client: str = "http") -> Result:
    """``raters`` closed-loop raters against a real ``python app.py``, each saving a rating of an answer every
    ``interval`` seconds through the ``rate`` API for ``seconds``: plain HTTP as the page sends it
    (``client="http"``) or through ``gradio_client``."""
    from asclepius_ui.ui.rating_widget import keep_state

    st = open_storage(url)
    proc, app = _start_app(url)
    try:
        callers = [(_page_caller if client == "http" else _gradio_caller)(app) for _ in range(raters)]
        lat: list[list[float]] = [[] for _ in range(raters)]
        acked = [0] * raters
        errors: list[str] = []

        for i in range(raters):  # each rater's page load, untimed: on a session's first event Gradio builds its
            # state (~45 ms of server CPU for this app's components, once per page)
            kept = keep_state(st, [dict(SNAPSHOT, started_at=f"r{i}-open")], new_uid(), {})
            acked[i] += callers[i](1, kept).startswith("Saved rating")

        def rater(i: int) -> None:
            time.sleep(interval * i / raters)  # raters spread over the interval, as people are
            k = 0
            while time.perf_counter() < stop:
                msg, took = _timed_save(st, callers[i], f"r{i}-{k}", 1 + k % 4, errors)
                lat[i].append(took)
                acked[i] += msg.startswith("Saved rating")
                k += 1
                time.sleep(max(0.0, interval - took))

        threads = [threading.Thread(target=rater, args=(i,)) for i in range(raters)]
        start = time.perf_counter()
        stop = start + seconds
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait(30)
    n = len(st.ratings(include_superseded=True))
    st.close()
    if errors:
        print(f"  {len(errors)} calls failed ({', '.join(sorted(set(errors)))}); stored {n}, acknowledged {sum(acked)}")
    assert n >= sum(acked), f"acknowledged {sum(acked)} but stored only {n}"
    return Result(client, raters, sum(acked), elapsed, [x for xs in lat for x in xs])


def _items(n: int, tag: str) -> ParsedStudy:
    return ParsedStudy(["x", "y"], [StudyItemIn(note=f"{tag} note {k} " + "text " * 100, question="q?", task="QA",
                                                answers={"x": "answer x " * 20, "y": "answer y " * 20},
                                                ext_id=str(k)) for k in range(n)])


def run_import(url: str, items: int, raters: int) -> None:
    """p50/p99 of rating saves while ``items`` study items import, and Start+Submit cost at 1k vs ``items``."""
    st = open_storage(url)
    parsed = _items(items, "big")
    lat: list[float] = []
    done = threading.Event()

    def rater(i: int) -> None:
        while not done.is_set():
            t = time.perf_counter()
            st.save_rating(snapshot=SNAPSHOT, score=3, rater=f"r{i}", uid=new_uid(), comment="during import")
            lat.append(time.perf_counter() - t)
            time.sleep(0.05)

    threads = [threading.Thread(target=rater, args=(i,)) for i in range(raters)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    big = st.create_study("big", parsed, 2, "bench")
    import_s = time.perf_counter() - t0
    done.set()
    for t in threads:
        t.join()
    p50, p99 = quantiles(lat)
    print(f"import of {items} items: {import_s:.1f} s; {len(lat)} rating saves meanwhile ({raters} raters): "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(lat) * 1000:.1f} ms")
    small = st.create_study("small", _items(1000, "small"), 2, "bench")
    for sid, n in ((small, 1000), (big, items)):
        costs = []
        for k in range(30):
            t = time.perf_counter()
            view = st.next_assignment(sid, f"rater{k}")
            st.rater_progress(sid, f"rater{k}")
            st.submit_item(assignment_id=view["assignment_id"], rater=f"rater{k}", uid=new_uid(), seconds=1.0,
                           scores={a["answer_id"]: (3, "") for a in view["answers"]})
            st.next_assignment(sid, f"rater{k}")
            costs.append(time.perf_counter() - t)
        print(f"Start+Submit+next with {n:>6} items: median {statistics.median(costs) * 1000:.1f} ms")
    st.close()


def _import_caller(app: str, path: Path, name: str):
    """The Admin page's "Import study", as the page sends it: the file to ``/gradio_api/upload``, then the
    import event by its index through the queue (``queue/join``), its result read from the SSE stream."""
    import httpx

    http = httpx.Client(base_url=app, timeout=3600)
    config = http.get("config").json()
    button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "admin-import")
    fn_index = next(i for i, d in enumerate(config["dependencies"]) if [button, "click"] in d["targets"])
    fn_index = config["dependencies"][fn_index].get("id", fn_index)
    with path.open("rb") as f:
        server_path = http.post("gradio_api/upload", files={"files": (path.name, f, "application/octet-stream")}
                                ).json()[0]

    def call() -> str:
        session = uuid.uuid4().hex
        upload = {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
        data = [upload, name, 2, False, False]  # file, name, overlap, import even if identical, show raters findings
        http.post("gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                 "trigger_id": button, "event_data": None}).raise_for_status()
        with http.stream("GET", f"gradio_api/queue/data?session_hash={session}") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and '"process_completed"' in line:
                    msg = json.loads(line[5:])
                    return str((msg.get("output") or {}).get("data", [""])[0]) if msg.get("success") else str(msg)
        return "no result"
    return call


def run_http_import(url: str, items: int, raters: int, interval: float, baseline_s: float) -> None:
    """HTTP rating saves of ``raters`` raters against a real ``python app.py``: first ``baseline_s`` seconds with
    nothing else running, then while an admin imports ``items`` study items through the Admin page (the import
    runs in the server process, as it does for a real admin). Prints both p99s and their ratio."""
    from asclepius_ui.ui.rating_widget import keep_state

    st = open_storage(url)
    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    study = folder / "big.jsonl"
    with study.open("w") as f:
        for k, it in enumerate(_items(items, "http").items):
            f.write(json.dumps({"id": f"i{k}", "note": it.note, "question": it.question, "task": it.task,
                                **{f"answer_{m}": a for m, a in it.answers.items()}}) + "\n")
    proc, app = _start_app(url)
    try:
        callers = [_page_caller(app) for _ in range(raters)]
        phase: list[str] = ["baseline"]
        lat: dict[str, list[float]] = {"baseline": [], "import": []}
        acked = [0] * raters
        errors: list[str] = []
        stop = threading.Event()
        for i in range(raters):  # each rater's page load, untimed (see run_http)
            kept = keep_state(st, [dict(SNAPSHOT, started_at=f"r{i}-open")], new_uid(), {})
            acked[i] += callers[i](1, kept).startswith("Saved rating")

        def rater(i: int) -> None:
            time.sleep(interval * i / raters)
            k = 0
            while not stop.is_set():
                now = phase[0]
                msg, took = _timed_save(st, callers[i], f"r{i}-{k}", 1 + k % 4, errors)
                if phase[0] == now:  # a save that straddles the start of the import counts for neither
                    lat[now].append(took)
                acked[i] += msg.startswith("Saved rating")
                k += 1
                time.sleep(max(0.0, interval - took))

        admin = _import_caller(app, study, "big")
        threads = [threading.Thread(target=rater, args=(i,)) for i in range(raters)]
        for th in threads:
            th.start()
        time.sleep(baseline_s)
        phase[0] = "import"
        t0 = time.perf_counter()
        status = admin()
        import_s = time.perf_counter() - t0
        stop.set()
        for th in threads:
            th.join()
    finally:
        proc.kill()
        proc.wait(30)
    n = len(st.ratings(include_superseded=True))
    studies = st.studies()
    st.close()
    if errors:
        print(f"  {len(errors)} calls failed ({', '.join(sorted(set(errors)))})")
    assert n >= sum(acked), f"acknowledged {sum(acked)} but stored only {n}"
    imported = next((s["items"] for s in studies if s["name"] == "big"), 0)
    print(f"import through the page: {imported} of {items} items in {import_s:.1f} s ({status[:80]!r})")
    (b50, b99), (i50, i99) = quantiles(lat["baseline"]), quantiles(lat["import"])
    print(f"HTTP saves, {raters} raters every {interval:g} s: without import n={len(lat['baseline'])} p50 "
          f"{b50:.1f} ms p99 {b99:.1f} ms; during import n={len(lat['import'])} p50 {i50:.1f} ms p99 {i99:.1f} ms, "
          f"max {max(lat['import']) * 1000:.1f} ms; p99 ratio import/without {i99 / b99:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--raters", default="1,10,50")
    ap.add_argument("--writes", type=int, default=40, help="writes per rater")
    ap.add_argument("--http", action="store_true", help="through the running app's HTTP API instead")
    ap.add_argument("--client", default="http", choices=["http", "gradio", "both"],
                    help="--http: plain HTTP as the page sends it, gradio_client, or both one after the other")
    ap.add_argument("--interval", type=float, default=2.0, help="--http: seconds between a rater's saves")
    ap.add_argument("--seconds", type=float, default=60.0, help="--http: how long to run")
    ap.add_argument("--import-items", type=int, default=0, help="measure saves during an import of this many items")
    args = ap.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b != "postgresql" or os.environ.get(ENV)]
    if len(backends) < len(args.backends.split(",")):
        print(f"(PostgreSQL skipped: set {ENV} to a server URL)")

    def new_url(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tempfile.mkdtemp(prefix='bench-')}/ratings.db"
        return create_database(os.environ[ENV])

    if args.import_items:
        for backend in backends:
            print(f"[{backend}]", flush=True)
            if args.http:
                run_http_import(new_url(backend), args.import_items, int(args.raters.split(",")[-1]),
                                args.interval, baseline_s=min(args.seconds, 30.0))
            else:
                run_import(new_url(backend), args.import_items, raters=10)
        return 0
    print(f"{'backend':<10} {'raters':>6} {'writes':>7} {'writes/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for backend in backends:
        for raters in map(int, args.raters.split(",")):
            if not args.http:
                print(run(new_url(backend), backend, raters, args.writes).line(), flush=True)
                continue
            for client in (("http", "gradio") if args.client == "both" else (args.client,)):
                result = run_http(new_url(backend), raters, args.interval, args.seconds, client)
                result.backend = f"{client}/{backend}"
                print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
