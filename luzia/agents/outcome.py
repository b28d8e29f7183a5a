"""What an attempt's output says beyond its exit code: its usage (cost, tokens, session),
read from usage.json (written by the wrapper's output adapter, adapters/stream.py), and a
provider's usage limit that ended it (limits.py). The held jobs (held.py) put both in their
Progress and Done."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from luzia import layout, protocol
from luzia.agents import limits
from luzia.agents.jobdir import ATTEMPT_MARK, JobDir
from luzia.config import Config

log = logging.getLogger(__name__)

SCANNED_BYTES = 16 * 1024     # of output.log's end looked at for a limit


def read_usage(jd: JobDir) -> tuple[protocol.Usage, str]:
    """The attempt's usage as its adapter reported it (NO_USAGE when there is none), and
    the error the agent reported ("" for none)."""
    try:
        data: Any = json.loads((jd.path / layout.USAGE).read_text())
    except (OSError, ValueError):
        return protocol.NO_USAGE, ""
    if not isinstance(data, dict):
        return protocol.NO_USAGE, ""
    values: dict[str, Any] = {}
    for name, default in protocol.to_plain(protocol.NO_USAGE).items():
        value = data.get(name)
        if isinstance(default, str) and isinstance(value, str):
            values[name] = value[:128]
        elif (isinstance(value, (int, float)) and not isinstance(value, bool)
              and not isinstance(default, str)):
            try:
                values[name] = type(default)(max(-1 if name == "cost_usd" else 0, value))
            except OverflowError:             # int(1e999): past every limit
                values[name] = default
    try:
        usage = protocol.check(protocol.Usage(**values))
    except (protocol.ProtocolError, OverflowError) as exc:   # past the wire's limits: report none
        log.warning("job %s: usage.json out of bounds: %s", jd.id, exc)
        return protocol.NO_USAGE, ""
    error = data["error"] if isinstance(data.get("error"), str) else ""
    return usage, error


def limit_of(cfg: Config, jd: JobDir, exit_code: int, error: str) -> limits.Limit | None:
    """The usage limit that ended a failed attempt, if its output shows one."""
    if exit_code == 0 and not error:
        return None
    lines = [*_end_of_log(jd), *error.splitlines()]
    found = limits.detect(lines, time.time(), cfg.limits.wait, cfg.limits.rate_wait,
                          cfg.limits.patterns)
    if found is not None:
        log.info("job %s: %s limit until %s: %s", jd.id, found.kind,
                 time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(found.until)), found.line)
    return found


def _end_of_log(jd: JobDir) -> list[str]:
    """The last lines of output.log, this attempt's only (an earlier one's limit is over)."""
    try:
        with open(jd.output, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - SCANNED_BYTES))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    starts = [i for i, line in enumerate(lines) if line.startswith(ATTEMPT_MARK)]
    return lines[starts[-1] + 1:] if starts else lines


def seen(jd: JobDir) -> protocol.Usage:
    """The running attempt's usage so far; the session it made is kept in the job's
    directory as soon as it shows (the agent may die before the attempt ends)."""
    usage, _ = read_usage(jd)
    _keep(jd, usage)
    return usage


def ended(cfg: Config, jd: JobDir, exit_code: int) -> tuple[protocol.Usage, limits.Limit | None]:
    """An attempt's end: its usage, the limit that ended it (if any)."""
    usage, error = read_usage(jd)
    _keep(jd, usage)
    return usage, limit_of(cfg, jd, exit_code, error)


def _keep(jd: JobDir, usage: protocol.Usage) -> None:
    """Remember the attempt's session (with its account) to resume it here later."""
    if not usage.session_id:
        return
    try:
        jd.keep_session(usage.session_id, str(jd.meta().get("account", "")))
    except (OSError, ValueError) as exc:
        log.warning("job %s: cannot keep its session id: %s", jd.id, exc)
