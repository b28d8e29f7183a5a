"""The broker's Prometheus metrics, scraped over HTTP from a real broker with a real agent."""

from __future__ import annotations

import urllib.request

import zmq
from prometheus_client.parser import text_string_to_metric_families

from tests.fleet import LocalFleet, fleet_config
from tests.helpers import free_ports, wait_for


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_are_off_by_default_and_scraped_when_on(short_tmp):
    port = free_ports(1)[0]
    text = fleet_config('runner = "subprocess"').replace("[broker]\n", f"[broker]\nmetrics_port = {port}\n")
    fleet = LocalFleet(short_tmp / "f", text)
    try:
        fleet.start_broker()
        fleet.start_agent("gpu1")
        wait_for(lambda: "gpu1" in fleet.live_agents(), 15)
        done = fleet.submit("demo", "hello")
        refused = fleet.cli("demo", "never", "--after", "000000-000000000000")
        assert refused.returncode == 75 and b"unknown dependency" in refused.stderr
        push = fleet.ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(f"ipc://{fleet.home}/run/submit")
        push.send_multipart([b"LZ1", b"garbage"])
        push.close()
        wait_for(lambda: fleet.state(done) == "completed", 20)

        def settled() -> dict | None:
            m = scrape(port)
            return m if m.get(("luzia_bad_frames_total", (("socket", "submit"),))) == 1 and \
                m.get(("luzia_jobs", (("state", "completed"),))) == 1 else None
        m = wait_for(settled, 10, message="metrics catch up")
        assert m[("luzia_submissions_total", ())] == 2
        assert m[("luzia_rejections_total", ())] == 1
        assert m[("luzia_jobs", (("state", "rejected"),))] == 1
        assert m[("luzia_queue_depth", (("priority", "normal"),))] == 0
        assert m[("luzia_decision_seconds_count", ())] >= 1
        assert m[("luzia_agent_slots", (("agent", "gpu1"),))] == 2
        assert m[("luzia_agent_up", (("agent", "gpu1"),))] == 1
        assert ("luzia_agent_load", (("agent", "gpu1"),)) in m
        assert ("luzia_agent_running", (("agent", "gpu1"),)) in m
        assert f"metrics on http://127.0.0.1:{port}/metrics" in fleet.output("broker")
    finally:
        fleet.close()
    off = LocalFleet(short_tmp / "g", fleet_config())
    try:
        off.start_broker()
        assert "metrics on" not in off.output("broker")
    finally:
        off.close()
