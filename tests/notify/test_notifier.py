"""The notifier's loop in the test's thread (no broker: it waits for one), delivering what
its outbox holds to a real local HTTP server: the rate per target, giving up, status."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from luzia import config
from luzia.errors import LuziaError
from luzia.notify.notifier import Notifier
from tests.helpers import free_ports, wait_for
from tests.notify.rig import notify_config


@pytest.fixture
def make_notifier(short_tmp):
    made: list[Notifier] = []

    def make(targets: dict[str, str], extra: str = "") -> Notifier:
        home = short_tmp / "h"
        home.mkdir(exist_ok=True)
        (home / "luzia.toml").write_text(f'home = "{home}"\n' + notify_config(
            targets, [(["failed"], list(targets))], extra))
        n = Notifier(config.load(env={"LUZIA_CONFIG": str(home / "luzia.toml")}))
        made.append(n)
        return n
    yield make
    for n in made:
        n.close()


def queue(n: Notifier, *keys: str, target: str = "hook") -> None:
    with n.outbox.transaction():
        for key in keys:
            n.outbox.add(key, target, "failed", f"title {key}", "body", "failure", time.time())


def turns(n: Notifier, until, timeout: float = 30):
    def turned():
        n.turn(0.01)
        return until()
    return wait_for(turned, timeout)


def test_the_rate_per_target_holds_the_rest_back(make_notifier, webhook):
    n = make_notifier({"hook": webhook.url()}, "rate = 1\n")
    queue(n, "a", "b", "c")
    turns(n, lambda: webhook.messages())
    for _ in range(50):           # 1 a minute: the others wait, however often the loop turns
        n.turn(0.01)
    assert [m["title"] for m in webhook.messages()] == ["title a"]
    hook, = n.status()["targets"]
    assert (hook["sent"], hook["pending"], hook["failed"]) == (1, 2, 0)
    assert n.status()["broker"].startswith("unreachable: broker not reachable")


def test_a_notification_never_delivered_is_given_up_logged_and_counted(make_notifier, caplog):
    dead, = free_ports(1)
    n = make_notifier({"hook": f"json://127.0.0.1:{dead}/x"}, "give_up_after = 0.5\n")
    queue(n, "doomed")
    hook = turns(n, lambda: (t := n.status()["targets"][0])["failed"] == 1 and t)
    assert hook["pending"] == 0 and "Connection error" in hook["last_error"]
    assert n.outbox.keys() == [("doomed", "hook", "failed")]
    assert any("FAILED" in r.getMessage() and "doomed" in r.getMessage() for r in caplog.records)


def test_one_notifier_per_state_dir(make_notifier, webhook):
    make_notifier({"hook": webhook.url()})
    with pytest.raises(LuziaError, match=r"another luzia-notify \(pid \d+\) is running"):
        make_notifier({"hook": webhook.url()})


def test_a_stop_gives_up_a_request_the_broker_does_not_answer(make_notifier, webhook):
    """The supervisor stops the broker and the notifier at once: a catch-up in flight must
    not hold the notifier's stop for its whole timeout (made an hour here, so only giving
    up lets the loop end before the test's own timeout)."""
    n = make_notifier({"hook": webhook.url()})
    silent: zmq.Socket = zmq.Context.instance().socket(zmq.ROUTER)   # never answers
    silent.setsockopt(zmq.LINGER, 0)
    silent.bind(n.cfg.endpoints.control)
    n.broker.timeout = 3600.0
    asked = threading.Event()

    def broker():
        if silent.poll(30_000):
            silent.recv_multipart()
            asked.set()
            n.stop()              # as SIGTERM's handler does, while the request waits
    thread = threading.Thread(target=broker)
    thread.start()
    try:
        n.running = True
        while n.running:          # run() without its close(): the fixture closes
            n.turn()
    finally:
        thread.join(60)
        silent.close(0)
    assert asked.is_set(), "the notifier never asked the broker"
    assert n.broker_state == "not asked yet"     # giving up at a stop is no outage
