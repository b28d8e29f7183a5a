"""A fleet of one on a busy host (a laptop compiling, a shared 2-core box): its agent beats
with the CPU over the ceiling and still runs one job at a time; the others say why they wait.
A real broker on real sockets; the agent is scripted, since a real one reports the CPU it
measures and a test cannot hold that at 100 %."""

from __future__ import annotations

from luzia import protocol
from luzia.states import JobState
from tests.broker.harness import Client, FakeAgent, Peer, beating, job_state, pump, spec


class BusyAgent(FakeAgent):
    """Beats with its host's CPU at 100 %."""

    def beat(self) -> None:
        self.send(protocol.Heartbeat(cpu=1.0, memory=0.2, running=sorted(self.holding)))


def test_a_busy_host_runs_one_job_at_a_time_and_the_others_say_why(broker, ctx):
    import zmq
    agent = BusyAgent(ctx, broker, name="laptop", slots=2)
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    first, second = spec(user="alice"), spec(user="bob")
    push.send(protocol.Submit(job=first))
    pump(broker, beating([agent], lambda: job_state(broker, first.id) is JobState.ASSIGNED))
    push.send(protocol.Submit(job=second))
    control = Client(ctx, broker)
    pump(broker, beating([agent], lambda: job_state(broker, second.id) is JobState.PENDING))

    def why() -> str:
        reply = control.call(broker, "jobs.get", id=second.id)
        return reply.result["why"]
    assert why() == "laptop over cpu ceiling (100 % > 80 %); running 1, it takes more once under"
    detail = broker.model.store.db.execute(
        "SELECT detail FROM events WHERE job_id=? AND state='assigned'", (first.id,)).fetchone()[0]
    assert detail == ("assigned to laptop (attempt 1); its host is over its cpu ceiling "
                      "(100 % > 80 %), it runs this one job only")
    status = control.call(broker, "agents.status").result[0]
    assert (status["health"], status["running"]) == ("over-ceiling", 1)

    agent.finish(first.id)                     # idle again: the next one goes, busy or not
    pump(broker, beating([agent], lambda: job_state(broker, second.id) is JobState.ASSIGNED))
    agent.finish(second.id)
    pump(broker, beating([agent], lambda: job_state(broker, second.id) is JobState.COMPLETED))
    status = control.call(broker, "agents.status").result[0]
    assert (status["health"], status["load_level"]) == ("busy", "moderate")
