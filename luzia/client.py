"""The client side: submit a job (the CLI's fast path and the Python API), wait for it,
and ask the broker.

    from luzia import client
    job_id = client.submit("overbits", "fix the login button", priority="high")
    job = client.wait(job_id, timeout=3600)      # the final job: state, exit_code, times

Submitting never waits for the work. When the broker is on this host the job is first
written to the spool (write, fsync, rename), so it is never lost once an id is returned.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luzia import keys, layout, submitbody
from luzia.cache import changed
from luzia.config import Config, ensure_private_dir, is_local, load
from luzia.errors import (
    BrokerUnreachable,
    LuziaError,
    NotFound,
    ProtocolError,
    StateDirError,
    UsageError,
    WaitTimeout,
    error_for_code,
)
from luzia.frozen import Frozen, frozen
from luzia.ids import JOB_ID_RE, new_job_id
from luzia.states import Priority
from luzia.text import clip, not_utf8

if TYPE_CHECKING:
    import zmq

    from luzia import protocol

# No logger: the submit fast path pays for every import (logging ~5 ms; zmq once a socket
# is needed; luzia.protocol, msgspec ~18 ms, for what luzia.submitbody does not pack).

HINT = "start it with `make run` or `luzia-supervisor`"
SUPERVISED_HINT = ("this host's supervisor runs, the broker does not: start it with "
                   "`luzia supervisor start broker` (`luzia supervisor status` says why it stopped)")
CONNECT_WAIT = 0.3   # seconds to wait for a tcp connection before calling the broker down
CURVE_CONNECT_WAIT = 1.0   # the same with a CURVE handshake (and the broker's key check) in it
PROBE_AFTER = 0.02   # ipc not writable this soon: is its socket file one a dead broker left?
MAX_METADATA_DEPTH = 32    # levels of --metadata: a job's notes, not a data structure


@frozen
class Submitted(Frozen):
    """What became of a submission: spooled here, pushed to the broker, or both."""

    id: str
    spec: protocol.JobSpec | dict[str, Any]     # as given to send
    spooled: bool
    reachable: bool
    spool_dir: str
    why: str = ""          # why the broker was not tried, if it was not


def submit(project: str, task: str, **options: Any) -> str:
    """Queue `task` for `project`; return its job id. Options: priority, type, user, timeout,
    max_retries, after (ids), metadata (dict), base (a branch, tag or commit),
    with_local_changes (bool), cfg (a Config)."""
    return send(prepare(project, task, **options), options.get("cfg")).id


def build(project: str, task: str, **options: Any) -> protocol.JobSpec:
    """The job as it will be sent, as a protocol.JobSpec (prepare's fields, its options)."""
    from luzia import protocol
    return protocol.JobSpec(**prepare(project, task, **options))


def prepare(project: str, task: str, *, cfg: Config | None = None,
            priority: str | int | None = None, type: str | None = None, user: str | None = None,
            timeout: float | None = None, max_retries: int | None = None,
            after: list[str] | tuple[str, ...] = (), metadata: dict[str, Any] | None = None,
            base: str | None = None, with_local_changes: bool = False,
            dry_run: bool = False) -> dict[str, Any]:
    """The job as it will be sent: a JobSpec's fields, the project's defaults filled in,
    checked (UsageError). A project with a `repo` runs it in a worktree of its own
    (docs/WORKSPACES.md) from `base` (default: the project's), or from a local repo's
    uncommitted changes (`with_local_changes`; `dry_run`: checked, not snapshotted)."""
    cfg = cfg or load()
    proj = cfg.project(project)
    if not task.strip():
        raise UsageError("the task is empty; say what to do, e.g. luzia demo \"hello\"")
    try:
        prio = Priority.parse(priority if priority is not None else proj.priority)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    retries = max_retries if max_retries is not None else (
        proj.max_retries if proj.max_retries >= 0 else cfg.max_retries)
    for dep in after:
        if not JOB_ID_RE.fullmatch(dep):
            raise UsageError(f"--after wants job ids like 113754-a2f5c10e9b3d, not {clip(dep)}")
    _check_text(project=project, task=task, user=user, type=type, base=base)
    _check_metadata(metadata or {})
    job_id = new_job_id()
    repo, base, base_commit = _workspace(project, proj, job_id, base, with_local_changes,
                                         dry_run)
    job = dict(id=job_id, project=project, task=task, user=user or proj.user,
               priority=int(prio), type=type or proj.type or "",
               timeout=float(timeout if timeout is not None else proj.timeout),  # 0: the broker's
               max_retries=int(retries), after=list(after), metadata=dict(metadata or {}),
               workdir=proj.workdir, submitted_at=time.time(), repo=repo, base=base,
               base_commit=base_commit)
    _body(job)
    return job


def _body(job: dict[str, Any]) -> bytes:
    """The Submit's body for a job's fields; UsageError if they break a limit."""
    try:
        return submitbody.body(job)
    except LuziaError as exc:
        raise UsageError(f"invalid job: {exc}") from None


def _workspace(name: str, proj: Any, job_id: str, base: str | None,
               local_changes: bool, dry_run: bool = False) -> tuple[str, str, str]:
    """(repo, base, base commit) of a job; what this host can check is checked now (exit 2
    at once, not a failed job later). git runs only for a repo that is a directory here."""
    if not proj.repo:
        if base is not None or local_changes:
            raise UsageError(f"project {name} has no repo: --base and --with-local-changes "
                             "need one (docs/WORKSPACES.md)")
        return "", "", ""
    from luzia import gitref
    base = proj.base if base is None else base
    if base and not gitref.valid(base):
        raise UsageError(f"--base {base!r} is not a branch, tag or commit name")
    local = not gitref.is_url(proj.repo) and os.path.isdir(proj.repo)
    if local_changes:
        if not local:
            raise UsageError(f"--with-local-changes needs project {name}'s repo on this host "
                             f"as a local path, not {proj.repo}")
        from luzia import workbase
        return proj.repo, *workbase.local_changes(proj.repo, job_id, base, dry_run)
    if local and base:
        from luzia import workbase
        workbase.check_base(proj.repo, base)
    return proj.repo, base, ""


def _check_text(**fields: str | None) -> None:
    """UsageError for a field that cannot travel as UTF-8 (a byte from a latin-1 terminal)."""
    for name, value in fields.items():
        why = not_utf8(value or "")
        if why:
            what = {"task": "the task", "project": "the project name"}.get(name, f"--{name}")
            raise UsageError(f"{what} {why}; Luzia takes UTF-8 text (check the terminal's locale)")


def _check_metadata(metadata: dict[str, Any]) -> None:
    """UsageError for metadata nested deeper than MAX_METADATA_DEPTH or holding a string that
    is not UTF-8; walked with a stack, so no depth can end in a RecursionError."""
    stack: list[tuple[Any, int]] = [(metadata, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list) and depth > MAX_METADATA_DEPTH:
            raise UsageError(f"--metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values()]
            stack += [(k, depth) for k in value]
        elif isinstance(value, list):
            stack += [(v, depth + 1) for v in value]
        elif isinstance(value, str) and not_utf8(value):
            raise UsageError(f"--metadata {not_utf8(value)}")
        elif isinstance(value, int) and not submitbody.INT_RANGE[0] <= value <= submitbody.INT_RANGE[1]:
            raise UsageError(f"--metadata holds an integer out of range: {clip(str(value))}")


def _check_args(args: dict[str, Any]) -> None:
    """UsageError for a request argument that is not UTF-8 (a terminal's locale), at once."""
    for name, value in args.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, str) and not_utf8(item):
                raise UsageError(f"{name} {not_utf8(item)}")


def send(spec: protocol.JobSpec | dict[str, Any], cfg: Config | None = None) -> Submitted:
    """Spool (where the broker sweeps this home's spool) and push a JobSpec or `prepare`'s
    fields; BrokerUnreachable (saying why) when the job could not be made durable anywhere."""
    cfg = cfg or load()
    if isinstance(spec, dict):
        job_id, body = spec["id"], _body(spec)
    else:
        from luzia import protocol
        job_id, body = spec.id, protocol.spool_bytes(protocol.Submit(job=spec))
    spooled = False
    if sweeps_here(cfg):
        ensure_private_dir(Path(cfg.home))
        _spool(ensure_private_dir(cfg.spool_dir), job_id, body)
        spooled = True
    try:
        curve = keys.client_keys(cfg, cfg.endpoints.submit)
    except keys.MissingKeys as exc:
        if not spooled:
            raise
        return Submitted(job_id, spec, spooled, False, str(cfg.spool_dir), str(exc))
    sent, refusal = _push(cfg, submitbody.frames(body), curve)
    changed(cfg)              # this host's cached answers do not know the job
    if not sent and not spooled:
        endpoint = cfg.endpoints.submit
        raise BrokerUnreachable(f"{refusal}; the job was not queued" if refusal else
                                f"broker not reachable at {endpoint}; the job was not queued "
                                f"({HINT} on the broker's host){keys.silence_hint(cfg, endpoint)}")
    return Submitted(job_id, spec, spooled, sent, str(cfg.spool_dir), refusal)


def sweeps_here(cfg: Config) -> bool:
    """Does the broker we submit to sweep this home's spool? For the default ipc endpoint it
    does (its home is ours); otherwise only if a broker serving our submit endpoint said so
    in the spool at its start (`.broker`). A CLI on a client host never spools: no broker
    would ever read it there (DECISIONS 2, 61)."""
    if cfg.endpoints.submit == f"ipc://{cfg.run_dir}/submit":
        return True
    try:
        return (cfg.spool_dir / layout.SPOOL_OWNER).read_text() == cfg.endpoints.submit
    except (OSError, UnicodeDecodeError):
        return False


def start_hint(cfg: Config) -> str:
    """How to start the broker, from here: through this host's supervisor when it runs."""
    supervisor = cfg.endpoints.supervisor
    if (is_local(cfg.endpoints.control) and supervisor.startswith("ipc://")
            and _listening(supervisor[6:])):
        return SUPERVISED_HINT
    return HINT


def _spool(directory: Path, job_id: str, data: bytes) -> None:
    tmp = directory / layout.spool_tmp_name(job_id)
    renamed = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, directory / layout.spool_name(job_id))
        renamed = True
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        if not renamed:       # a full disk must not leave an empty .ID.tmp behind (issue 17)
            try:
                tmp.unlink()
            except OSError:
                pass
        raise StateDirError(f"cannot write the job to the spool {directory}: "
                            f"{exc.strerror or exc}") from None


def _listening(path: str) -> bool:
    """Is anything accepting on this Unix socket? (A dead broker leaves its socket file.)
    The C module itself: socket.py (its enums, selectors) costs ~1.5 ms of every submit."""
    import _socket
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _push(cfg: Config, frames: list[bytes], curve: keys.ClientKeys | None = None
          ) -> tuple[bool, str]:
    """Hand the frames to the broker's PULL socket: (sent, refusal). Not sent when nothing
    listens in time, or, with CURVE, when the broker refused our key or is not the broker we
    hold a key of: `refusal` says which, as a socket monitor hears it at once (the socket
    itself only stays silent)."""
    endpoint = cfg.endpoints.submit
    if endpoint.startswith("ipc://") and not os.path.exists(endpoint[6:]):
        return False, ""    # no broker ever listened here: zmq is not even imported
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    monitor = None
    try:
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.LINGER, 1000)
        if curve is not None:
            curve.apply(sock)
            monitor = keys.watch_handshake(sock)
        sock.connect(endpoint)
        wait = CONNECT_WAIT if curve is None else CURVE_CONNECT_WAIT
        refusal = _wait_writable(sock, monitor, wait, cfg)
        if refusal is None:
            sock.send_multipart(frames, zmq.NOBLOCK)
            return True, ""
        sock.setsockopt(zmq.LINGER, 0)
        return False, refusal
    except zmq.ZMQError:
        sock.setsockopt(zmq.LINGER, 0)
        return False, ""
    finally:
        if monitor is not None:
            sock.disable_monitor()
            monitor.close(0)
        sock.close()
        ctx.term()


def _wait_writable(sock: zmq.Socket, monitor: zmq.Socket | None, seconds: float,
                   cfg: Config) -> str | None:
    """None once `sock` can send (with IMMEDIATE: its handshake done); else "" (nothing
    answered in time) or why its CURVE handshake failed. An ipc socket is probed only if
    not writable at once, as a live broker's almost always is (the probe costs ~0.5 ms)."""
    import zmq
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLOUT)
    if monitor is not None:
        poller.register(monitor, zmq.POLLIN)
    endpoint = cfg.endpoints.submit
    probe = endpoint[6:] if endpoint.startswith("ipc://") else ""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready = dict(poller.poll(int(min(left, PROBE_AFTER if probe else left) * 1000) + 1))
        if monitor is not None and monitor in ready:
            failed = keys.handshake_failure(monitor, cfg, endpoint)
            if failed:
                return failed
        if sock in ready:
            return None
        if probe and not _listening(probe):
            return ""
        probe = ""
    return ""


class Control:
    """Requests to the broker's control socket (or, with `endpoint`, the supervisor's), one at
    a time, each with a timeout: `Control(cfg).call("jobs.get", id=...)`."""

    def __init__(self, cfg: Config | None = None, timeout: float = 3.0,
                 endpoint: str | None = None, what: str = "broker",
                 stop_fd: int | None = None) -> None:
        import zmq
        self.zmq = zmq
        self.cfg = cfg or load()
        self.endpoint = endpoint or self.cfg.endpoints.control
        self.timeout = timeout
        self.what = what
        self.stop_fd = stop_fd     # readable: a request waiting for its reply gives up at once
        self.ctx: zmq.Context = zmq.Context.instance()
        self.sock: zmq.Socket | None = None
        self.handshake: zmq.Socket | None = None    # CURVE handshake failures of `sock`
        self.ids = itertools.count(1)

    def _socket(self) -> zmq.Socket:
        if self.sock is None:
            from luzia import protocol
            zmq = self.zmq
            if self.endpoint.startswith("ipc://") and not _listening(self.endpoint[6:]):
                raise self._down()
            curve = keys.client_keys(self.cfg, self.endpoint)
            self.sock = self.ctx.socket(zmq.DEALER)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE + 64)  # body plus envelope
            if curve is not None:
                curve.apply(self.sock)
                self.handshake = keys.watch_handshake(self.sock)
            self.sock.connect(self.endpoint)
        return self.sock

    def _down(self) -> BrokerUnreachable:
        hint = start_hint(self.cfg) if self.what == "broker" else HINT
        return BrokerUnreachable(f"{self.what} not reachable at {self.endpoint}; {hint}"
                                 f"{keys.silence_hint(self.cfg, self.endpoint)}")

    def call(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        """Send one request and wait for its reply; the result, or the error its code names
        (errors.error_for_code), or BrokerUnreachable when nothing answers within the timeout."""
        from luzia import protocol
        _check_args(args)
        sock = self._socket()
        req = next(self.ids)
        request = protocol.Request(req=req, op=op, args=args, protocol=protocol.PROTOCOL)
        sock.send_multipart(protocol.encode(request))
        deadline = time.monotonic() + (timeout or self.timeout)
        while (left := deadline - time.monotonic()) > 0:
            if not self._wait(sock, left):
                continue
            reply = protocol.decode(sock.recv_multipart())
            if isinstance(reply, protocol.Reply) and reply.req == req:
                if reply.ok:
                    return reply.result
                raise error_for_code(reply.code, reply.error)
        self.close()
        raise self._down()

    def _wait(self, sock: zmq.Socket, seconds: float) -> bool:
        """Wait for a reply; a CURVE handshake that failed is said at once, not at the timeout,
        and a process stopping (`stop_fd` readable) does not wait out the timeout either."""
        if self.handshake is None and self.stop_fd is None:
            return bool(sock.poll(int(seconds * 1000)))
        poller = self.zmq.Poller()
        poller.register(sock, self.zmq.POLLIN)
        if self.handshake is not None:
            poller.register(self.handshake, self.zmq.POLLIN)
        if self.stop_fd is not None:
            poller.register(self.stop_fd, self.zmq.POLLIN)
        ready = dict(poller.poll(int(seconds * 1000)))
        if self.stop_fd is not None and self.stop_fd in ready and sock not in ready:
            self.close()
            raise BrokerUnreachable(f"the request to the {self.what} was given up: stopping")
        if self.handshake is not None and self.handshake in ready:
            failed = keys.handshake_failure(self.handshake, self.cfg, self.endpoint)
            if failed:
                self.close()
                raise BrokerUnreachable(failed)
        return sock in ready

    def close(self) -> None:
        if self.sock is not None:
            if self.handshake is not None:     # only ever made with the socket
                self.sock.disable_monitor()
                self.handshake.close(0)
                self.handshake = None
            self.sock.close(0)
            self.sock = None

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait(job_id: str, timeout: float | None = None, cfg: Config | None = None) -> dict[str, Any]:
    """Block until job `job_id` (a full id or a unique prefix) has ended; return its final
    job object (docs/PROTOCOL.md): `state` (completed, failed, killed or rejected),
    `exit_code`, `reason`, `submitted_at`, `started_at`, `finished_at`, `attempts`, ....

    Raises WaitTimeout (a TimeoutError) after `timeout` seconds (None: no limit), NotFound
    for a job the broker does not have and this host's spool does not hold. A broker that
    is down (restarting, or not yet started with the job in the spool) is waited for.
    Woken by the broker's job events; asks again every `monitor_interval` seconds anyway."""
    from luzia.jobevents import Events
    cfg = cfg or load()
    deadline = None if timeout is None else time.monotonic() + timeout
    with Control(cfg) as ctl, Events(ctl) as events:
        while True:
            job = _final(ctl, job_id)
            if job is not None:
                return job
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(f"job {job_id} has not ended after {timeout:g}s")
            events.wait(min(max(0.05, cfg.monitor_interval), left if left is not None else 1e9))


def _final(ctl: Control, job_id: str) -> dict[str, Any] | None:
    """The job if it has ended; None while it runs, waits, or the broker cannot be asked."""
    try:
        job = ctl.call("jobs.get", id=job_id)
    except BrokerUnreachable:
        return None
    except NotFound:
        if JOB_ID_RE.fullmatch(job_id) and (ctl.cfg.spool_dir / layout.spool_name(job_id)).exists():
            return None         # the broker has not taken it from the spool yet
        raise
    if not isinstance(job, dict) or not isinstance(job.get("state"), str):
        raise ProtocolError("the broker answered jobs.get with something that is not a job")
    from luzia.states import TERMINAL_NAMES
    return job if job["state"] in TERMINAL_NAMES else None
