"""Rating writes per second and p50/p99 latency with 1, 10 and 50 concurrent raters, on SQLite and PostgreSQL.

    python bench/ratings.py                       # both backends; PostgreSQL from $ASCLEPIUS_TEST_PG_URL
    python bench/ratings.py --backends sqlite --raters 1,10,50 --writes 40

PostgreSQL: the server named by ASCLEPIUS_TEST_PG_URL, else a throwaway cluster from Debian's binaries.
Every write is a full acknowledged rating (snapshot, idempotency key, commit) as the app makes it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asclepius_ui.storage import new_uid, open_storage  # noqa: E402
from tests.pg import ENV, Cluster, create_database  # noqa: E402

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
        q = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return (f"{self.backend:<10} {self.raters:>6} {self.writes:>7} {self.writes / self.seconds:>10.1f} "
                f"{q[49] * 1000:>9.2f} {q[98] * 1000:>9.2f}")


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--raters", default="1,10,50")
    ap.add_argument("--writes", type=int, default=40, help="writes per rater")
    args = ap.parse_args(argv)
    cluster = None
    print(f"{'backend':<10} {'raters':>6} {'writes':>7} {'writes/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    try:
        for backend in args.backends.split(","):
            for raters in map(int, args.raters.split(",")):
                if backend == "sqlite":
                    url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-')}/ratings.db"
                else:
                    server = os.environ.get(ENV)
                    if not server:
                        cluster = cluster or Cluster()
                        server = cluster.url
                    url = create_database(server)
                print(run(url, backend, raters, args.writes).line(), flush=True)
    finally:
        if cluster:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
