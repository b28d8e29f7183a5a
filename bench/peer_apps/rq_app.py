"""RQ (default forking Worker) with a no-op job, for bench/peers.py. Runs in the peers' venv."""

import os

from done import noop
from redis import Redis
from rq import Queue

queue = Queue("bench", connection=Redis.from_url(os.environ["BENCH_REDIS_URL"]))


def enqueue_one() -> None:
    queue.enqueue(noop)


def worker_argv(bin_dir: str, url: str, here: str) -> list[list[str]]:
    """Two worker processes (rq.Worker forks a work horse per job, its default)."""
    argv = [f"{bin_dir}/rq", "worker", "-u", url, "--path", here, "--logging_level", "WARNING",
            "bench"]
    return [argv, argv]
