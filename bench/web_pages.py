"""The dashboard's pages with 100k jobs in history: time to render each page over HTTP.

A real broker and a real luzia-web (processes, ipc:// between them) on a database filled
beforehand with JOBS finished jobs (30 days, 40 users, 12 projects, 8 hosts). Each page is
fetched N times over one keep-alive connection, signed in with the operator's token;
the time is the whole request: luzia-web asking the broker (jobs.list + jobs.count, …)
and rendering the HTML. Goal (issue 14): a list page under 200 ms.

    python bench/web_pages.py [--jobs 100000] [-n 100]
"""

from __future__ import annotations

import argparse
import http.client
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PY, machine, median, pct, temp_fleet  # noqa: E402

from luzia import config  # noqa: E402
from luzia.broker.job import Job
from luzia.broker.store import Store  # noqa: E402
from luzia.states import JobState  # noqa: E402
from luzia.web import tokens  # noqa: E402
from tests.helpers import wait_for  # noqa: E402

WORDS = ("fix", "the", "login", "button", "refactor", "parser", "write", "tests", "for", "api",
         "summarise", "report", "plan", "migration", "explain", "flaky", "build", "docs")
ENDS = (JobState.COMPLETED,) * 8 + (JobState.FAILED, JobState.KILLED)


def fill(db: str, n: int) -> None:
    """n finished jobs straight into the store, as the broker would have left them."""
    rng = random.Random(14)
    store = Store(db)
    now = time.time()
    for i in range(n):
        submitted = now - 30 * 86400 * (1 - i / n)
        started = submitted + rng.uniform(0.1, 60)
        job = Job(id=f"{time.strftime('%H%M%S', time.localtime(submitted))}-{i:012x}", seq=i + 1,
                  project=f"proj{rng.randrange(12)}", user=f"user{rng.randrange(40)}",
                  task=" ".join(rng.choice(WORDS) for _ in range(8)) + f" #{i}",
                  priority=rng.randrange(4), type="code", timeout=0.0, max_retries=0, workdir="",
                  submitted_at=submitted, state=rng.choice(ENDS), host=f"gpu{rng.randrange(8)}",
                  attempt=1, progress=100.0, exit_code=0, assigned_at=submitted + 0.05,
                  started_at=started, finished_at=started + rng.uniform(5, 900),
                  updated_at=started)
        store.insert(job)
        if i % 10_000 == 9_999:
            store.commit()
    store.commit()
    store.close()


def timed(conn: http.client.HTTPConnection, path: str, headers: dict[str, str],
          n: int) -> tuple[list[float], int]:
    times, size = [], 0
    for i in range(n + 5):
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit(f"{path}: HTTP {resp.status}: {body[:200]!r}")
        if i >= 5:                                     # the first few warm the caches up
            times.append((time.perf_counter() - t0) * 1000)
        size = len(body)
    return times, size


PAGES = [
    ("jobs list, first page", "/jobs"),
    ("jobs list, page 1000 (offset 49,950)", "/jobs?page=1000"),
    ("jobs list, one user", "/jobs?user=user7"),
    ("jobs list, state failed + project", "/jobs?state=failed&project=proj3"),
    ("jobs list, text search", "/jobs?q=flaky+build"),
    ("fleet", "/"),
    ("history", "/history"),
    ("stats, 30 days with charts", "/stats?days=30"),
    ("jobs list, live fragment", "/jobs#fragment"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("-n", type=int, default=100, help="requests per page")
    args = p.parse_args()
    fleet = temp_fleet(f"max_jobs = {args.jobs * 2}\n[web]\nport = 0\n")
    try:
        t0 = time.perf_counter()
        fill(str(fleet.home / "luzia.db"), args.jobs)
        print(f"filled {args.jobs:,} finished jobs in {time.perf_counter() - t0:.1f}s")
        fleet.start_broker()
        fleet.start("web", [PY, "-m", "luzia.web"])
        url_file = fleet.home / "run" / "web.url"
        wait_for(url_file.exists, 60, interval=0.05, message="luzia-web listens")
        host, port = url_file.read_text().strip().rsplit("//", 1)[1].rsplit(":", 1)
        cfg = config.load(env=fleet.env)
        cookie = f"luzia_token_{port}={tokens.Tokens(cfg).ensure(tokens.operator())}"
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        print(f"machine: {machine()}")
        print(f"{'page':40} {'p50':>8} {'p99':>8} {'max':>8} {'bytes':>8}   ({args.n} requests each)")
        for name, path in PAGES:
            headers = {"Cookie": cookie, "Accept": "text/html"}
            if path.endswith("#fragment"):          # what a live page fetches on an event
                path, headers["X-Luzia-Fragment"] = path[:-len("#fragment")], "1"
            times, size = timed(conn, path, headers, args.n)
            print(f"{name:40} {median(times):7.1f}ms {pct(times, 99):7.1f}ms "
                  f"{max(times):7.1f}ms {size:8,}")
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
