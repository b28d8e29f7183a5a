"""Dramatiq (2 worker processes, default threads) with a no-op actor, for bench/peers.py.
Runs in the peers' venv."""

import os

import done
import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ["BENCH_REDIS_URL"]))


@dramatiq.actor
def noop() -> None:
    done.noop()


def enqueue_one() -> None:
    noop.send()


def worker_argv(bin_dir: str, url: str, here: str) -> list[list[str]]:
    return [[f"{bin_dir}/dramatiq", "dramatiq_app", "--processes", "2", "--path", here]]
