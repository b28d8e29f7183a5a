"""`luzia logs JOB_ID [-f] [--json]`: a job's output, read from its agent through the
broker (broker op logs.read, docs/PROTOCOL.md), and how it is written to a terminal or a pipe.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import click

from luzia.cli.control import connect, dump, fetch_job
from luzia.errors import ProtocolError

LOG_CHUNK = 65536      # bytes per logs.read
LOG_POLL = 0.3         # seconds between reads of `logs -f`
LIVE = ("pending", "assigned", "running", "lost")   # states in which output may still grow
# the start of an escape sequence that is not finished yet (CSI or OSC), or a lone \r
PARTIAL_ESCAPE = re.compile(r"(\x1b(\[[0-9;?]*[ -/]*|\][^\x07\x1b]*\x1b?)?|\r)\Z")


@click.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the job ended.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {id, state, size, source, output} of what is there now (not with -f).")
def logs(job_id, follow, as_json) -> None:
    """Print a job's output (read from its agent through the broker).

    Raw to a terminal; with escape sequences and control characters stripped when piped.
    When the job's agent cannot be reached, the last lines the broker keeps are shown."""
    if follow and as_json:
        raise click.UsageError("--json and --follow do not go together")
    ctl = connect()
    try:
        job_id = fetch_job(ctl, job_id)["id"]
        if as_json:
            dump(_read_all(ctl, job_id))
            return
        sink = LogSink()
        try:
            _copy(ctl, job_id, sink, follow)
        finally:
            sink.close()
    finally:
        ctl.close()


def _copy(ctl: Any, job_id: str, sink: LogSink, follow: bool) -> None:
    """The job's output into `sink`: what is there, and with `follow` what comes until it ended."""
    offset, shown_tail = 0, False
    while True:
        data, res = _read(ctl, job_id, offset)
        if res["source"] == "agent":
            sink.write(data)
            offset = res["offset"] + len(data)
            if data and offset < res["size"]:
                continue            # more is there already: no pause
        elif data and not shown_tail:
            sink.write(data)        # only the broker's tail: the agent is not reachable
            shown_tail = True
        if not follow or res["state"] not in LIVE:
            break
        time.sleep(LOG_POLL)  # polling interval of -f


def _read(ctl: Any, job_id: str, offset: int) -> tuple[bytes, dict[str, Any]]:
    """One logs.read, its fields checked (they came over the network)."""
    res = ctl.call("logs.read", id=job_id, offset=offset, limit=LOG_CHUNK)
    if not isinstance(res, dict):
        raise ProtocolError("the broker sent a malformed logs.read result")
    data = res.get("data") or b""
    fields = {"offset": res.get("offset", offset), "size": res.get("size", 0)}
    if not isinstance(data, bytes) or not all(isinstance(v, int) and v >= 0 for v in fields.values()):
        raise ProtocolError("the broker sent a malformed logs.read result")
    return data, {**fields, "state": str(res.get("state")),
                  "source": "agent" if res.get("source") == "agent" else "broker"}


def _read_all(ctl: Any, job_id: str) -> dict[str, Any]:
    chunks, offset = [], 0
    while True:
        data, res = _read(ctl, job_id, offset)
        chunks.append(data)
        offset = res["offset"] + len(data)
        if res["source"] != "agent" or not data or offset >= res["size"]:
            break
    from luzia.text import strip_terminal
    return {"id": job_id, "state": res["state"], "size": res["size"], "source": res["source"],
            "output": strip_terminal(b"".join(chunks).decode(errors="replace"))}


class LogSink:
    """Where `luzia logs` writes a job's bytes: raw to a terminal (the user asked to see the
    program's own colours); without one, escapes and control characters stripped — across
    chunk boundaries, so a sequence or a UTF-8 character split between two reads still goes."""

    HOLD = 64     # an escape sequence longer than this is not waited for

    def __init__(self, stream: Any = None) -> None:
        import codecs
        self.stream = stream or sys.stdout
        self.raw = self.stream.isatty()
        self.out = self.stream.buffer
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.held = ""

    def write(self, data: bytes, final: bool = False) -> None:
        if self.raw:
            self.out.write(data)
            self.out.flush()
            return
        from luzia.text import strip_terminal
        text = self.held + self.decoder.decode(data, final)
        self.held = ""
        if not final:
            # a trailing \r may be half of \r\n; a trailing escape may continue in the next read
            cut = len(text) - 1 if text.endswith("\r") else text.rfind("\x1b")
            if cut >= 0 and len(text) - cut < self.HOLD and PARTIAL_ESCAPE.match(text, cut):
                text, self.held = text[:cut], text[cut:]
        if text:
            self.out.write(strip_terminal(text).encode())
            self.out.flush()

    def close(self) -> None:
        self.write(b"", final=True)


COMMANDS = (logs,)
