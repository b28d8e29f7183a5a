"""Stand-in children for supervisor tests (python -c scripts we control), and a harness that
runs an Arbiter over them the way `luzia-supervisor` runs the real table:

    python -m tests.supervisor.standins CONFIG PROGRAMS_JSON [--echo]
"""

from __future__ import annotations

import json
import sys

PY = sys.executable

FOREVER = [PY, "-c", "import time\nwhile True: time.sleep(60)"]
EXIT_AT_ONCE = [PY, "-c", "raise SystemExit(3)"]
# ignores SIGTERM and SIGINT: only SIGKILL ends it
STUBBORN = [PY, "-c", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "signal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('stubborn up', flush=True)\n"
                      "while True: time.sleep(60)"]

# answers `ping` on a ROUTER at argv[1] with protocol.Reply(ok=True); after argv[2] answers
# (if given) it goes on living but answers nothing more: hung, not dead
PONGER_SRC = """
import sys, zmq
from luzia import protocol
limit = int(sys.argv[2]) if len(sys.argv) > 2 else -1
ctx = zmq.Context()
sock = ctx.socket(zmq.ROUTER)
sock.setsockopt(zmq.LINGER, 0)
sock.bind(sys.argv[1])
print("ponger up", flush=True)
answered = 0
while True:
    frames = sock.recv_multipart()
    if limit >= 0 and answered >= limit:
        continue
    req = protocol.decode(frames[1:])
    sock.send_multipart([frames[0], *protocol.encode(protocol.Reply(req=req.req, ok=True, result={}))])
    answered += 1
"""


def ponger(endpoint: str, answers: int = -1) -> list[str]:
    return [PY, "-c", PONGER_SRC, endpoint, str(answers)]


def chatty(lines: int) -> list[str]:
    return [PY, "-c", f"import time\nfor i in range({lines}): print('line', i, flush=True)\n"
                      "while True: time.sleep(60)"]


def main() -> int:
    import logging
    import os

    from luzia import config
    from luzia.supervisor.arbiter import Arbiter
    from luzia.supervisor.process import Program

    logging.basicConfig(level=logging.INFO, format="%(asctime)s harness %(levelname)s %(message)s")
    cfg = config.load(env={**os.environ, "LUZIA_CONFIG": sys.argv[1]})
    programs = [Program(p["name"], p["argv"], p.get("ping", "")) for p in json.loads(sys.argv[2])]
    arbiter = Arbiter(cfg, programs=programs, echo="--echo" in sys.argv)
    arbiter.handle_signals()
    print(f"harness up {os.getpid()}", flush=True)
    arbiter.run()
    print("harness stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
