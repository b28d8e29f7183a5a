"""Celery (prefork pool, 2 processes) with a no-op task, for bench/peers.py. Runs in the peers' venv."""

import os

import done
from celery import Celery

app = Celery("celery_app", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)


@app.task
def noop() -> None:
    done.noop()


def enqueue_one() -> None:
    noop.delay()


def worker_argv(bin_dir: str, url: str, here: str) -> list[list[str]]:
    # gossip, mingle and heartbeat only talk to other workers; there are none
    return [[f"{bin_dir}/celery", "-A", "celery_app", "worker", "-c", "2", "-P", "prefork",
             "-l", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]]
