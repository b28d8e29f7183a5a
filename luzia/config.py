"""One typed configuration: built-in defaults < TOML file < LUZIA_* env vars < flags.

The file is the first of: $LUZIA_CONFIG, $XDG_CONFIG_HOME/luzia/luzia.toml (or
~/.config/luzia/luzia.toml), /etc/luzia/luzia.toml. Every scalar key can be set from the
environment as LUZIA_<SECTION>_<KEY> (e.g. LUZIA_AGENT_SLOTS=4); LUZIA_HOME and the
variables of the older dispatcher Luzia replaces (seed 001, docs/GLOSSARY.md) keep their
meaning: LUZIA_JOBS_DIR, LUZIA_MAX_JOBS, LUZIA_CACHE_TTL, LUZIA_MONITOR_INTERVAL. Callers
apply flags with `load(overrides=...)`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from luzia import agentconf, configcache, gitref, layout
from luzia.agentconf import Account, AgentCommand, BudgetsConfig, LimitsConfig
from luzia.configbuild import build, from_env, merge
from luzia.errors import ConfigError, UsageError
from luzia.frozen import Frozen, frozen
from luzia.notifyconf import NotifyConfig, check_config
from luzia.places import (  # its own module; here for the modules that take them from config
    check_endpoint as check_endpoint,
    ensure_private_dir as ensure_private_dir,
    is_local as is_local,
)

TYPE_RULES_DEFAULT = {
    # the async dispatcher's routing (seed 003): the first rule whose keyword occurs in the task
    # text (lower-cased) wins
    "code": ["code", "fix", "bug", "implement", "refactor", "test", "function", "class",
             "compile", "build", "deploy", "script", "button", "api"],
    "reasoning": ["reason", "analy", "plan", "design", "prove", "why", "compare", "evaluate"],
    "text": ["summar", "write", "translate", "explain", "draft", "email", "doc", "text"],
}
# [attention]'s default patterns (luzia/agents/attention.py): searched in the pane's last
# lines joined by newlines (MULTILINE: ^ and $ at each line; \Z is the end of the last
# line, where a program waiting at a prompt has its cursor: an answered prompt,
# `Proceed? (y/n) y`, no longer matches)
ATTENTION_PATTERNS = (
    r"Do you want to (proceed|make this edit|create|allow|run|overwrite|continue)\b[^\n]*\?",
    r"^\s*❯\s*1\.\s*Yes\b",                     # Claude Code's dialogs: the choice under the cursor
    r"No, and tell Claude what to do differently",
    r"Do you trust the files in this folder\?",
    r"(?i)[(\[](y/n|yes/no)[)\]]\s*[:?]?\s*\Z",    # (y/n), [Y/n], (yes/no) ending the screen
    r"(?i)\b(proceed|continue)\?\s*\Z",
    r"(?i)press (enter|return) to continue\W*\Z",
)


def _login_name() -> str:
    """getpass.getuser()'s answer without importing getpass (and termios with it) on every
    submit: the first of LOGNAME, USER, LNAME, USERNAME, else the passwd entry."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except Exception:  # no passwd entry (containers): any stable name will do
        return f"uid{os.getuid()}"


def demo_command() -> list[str]:
    return [sys.executable, "-m", "luzia.agents.demo", "{task}"]


@frozen
class Endpoints(Frozen):
    submit: str = ""    # broker PULL: fire-and-forget SUBMIT from CLIs
    agents: str = ""    # broker ROUTER: agents' DEALER sockets
    control: str = ""   # broker ROUTER: queries and commands
    events: str = ""    # broker PUB: job.* and agent.* events
    supervisor: str = ""  # the supervisor's own control socket
    notify: str = ""    # the notifier's health/status socket (luzia-notify)


@frozen
class BrokerConfig(Frozen):
    db: str = ""                      # default: $LUZIA_HOME/luzia.db
    heartbeat_interval: float = 1.0   # seconds between beats, both ways
    liveness: int = 3                 # missed beats before an agent counts as dead
    lost_grace: float = 30.0          # seconds a dead agent's jobs wait for it before requeue
    retry_initial: float = 1.0        # seconds before a failed job's next attempt, doubling ...
    retry_max: float = 300.0          # ... up to this (also for attempts that never started)
    gone_after: float = 3600.0        # seconds dead (holding no job) before an agent is "gone":
                                      # listed, out of the alerts, until `luzia agents forget`
    max_msg_size: int = 1 << 20       # bytes; larger frames are dropped by ZeroMQ itself
    max_pending: int = 100_000        # backpressure: submissions past this are rejected
    batch: int = 2048                 # messages handled per loop turn (group commit size)
    spool_sweep: float = 1.0          # seconds between spool sweeps
    insecure: bool = False            # allow non-loopback tcp without CURVE
    metrics_port: int = 0             # Prometheus /metrics on this port; 0: off
    metrics_host: str = "127.0.0.1"   # the address /metrics listens on
    min_protocol: int = 1             # refuse agents and CLIs of an older protocol (DEPLOY.md)


@frozen
class SchedulerConfig(Frozen):
    per_user: bool = True             # at most one running job per user
    per_user_limits: dict[str, int] = field(default_factory=dict)  # user -> running cap override
    max_per_project: int = 2
    max_concurrent: int = 0           # 0: no global cap
    weight_cpu: float = 0.40
    weight_memory: float = 0.35
    weight_queue: float = 0.25
    cpu_ceiling: float = 0.80
    memory_ceiling: float = 0.85
    default_type: str = "code"
    type_rules: dict[str, list[str]] = field(default_factory=lambda: dict(TYPE_RULES_DEFAULT))
    user_lock_stale: float = 3600.0   # seconds after which a user's lock is considered stale
    preempt: bool = False
    preempt_after: float = 300.0
    gpu_mem_gb: dict[str, float] = field(default_factory=dict)  # task type -> free GPU GB it needs
    timeouts: dict[str, float] = field(default_factory=dict)    # task type -> default job timeout (s)


@frozen
class AgentConfig(Frozen):
    name: str = ""                    # default: this host's short name
    slots: int = 2
    capabilities: list[str] = field(default_factory=lambda: ["code", "text", "reasoning"])
    tags: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)  # default: the built-in demo agent
    commands: dict[str, AgentCommand] = field(default_factory=dict)  # per task type
    format: str = "none"              # the output format of `command`: none | claude | codex
    resume_argv: list[str] = field(default_factory=list)   # resumes `command`'s conversation
    runner: str = "auto"              # auto | tmux | subprocess | interactive
    tmux_socket: str = ""             # tmux -L name; default: luzia-<hash of the state dir>
    tmux_prefix: list[str] = field(default_factory=list)  # tmux through it, for both tmux runners
                                      # and `luzia attach`: e.g. ["docker", "exec", "-i", "box"]
                                      # (empty: interactive.tmux_prefix, the older spelling)
    kill_grace: float = 5.0           # seconds between SIGTERM and SIGKILL when stopping a job
    tail_lines: int = 20              # output lines sent with each progress report
    git_snapshots: bool = True        # refs/luzia/<id>/before|after when the workdir is a git repo
    stall_after: float = 600.0        # seconds without output change: the job is flagged stalled; 0: off
    kill_on_stall: bool = False       # stop a stalled job (failed, reason "stalled"; retries apply)
    workspace_dir: str = ""           # worktrees and mirrors (WORKSPACES.md); default $LUZIA_HOME/workspaces
    workspace_keep: float = 86400.0   # seconds an ended job's worktree is kept (its branch stays)
    branch_prefix: str = "luzia/"     # a workspace job's branch: <prefix><job id>
    push_retry: float = 60.0          # seconds before a failed push is tried again (doubling to 1 h)


@frozen
class InteractiveConfig(Frozen):
    """The interactive runner (agent.runner = "interactive"): one long-lived REPL per slot."""

    command: list[str] = field(default_factory=list)   # the REPL, e.g. ["claude"]; {workdir}
    done: str = "prompt"              # prompt | idle | shell: how a job's end is seen
    prompt: str = r"^\s*(>>>|[>❯$#%])\s*$"  # regex on the pane's last non-blank line
    idle: float = 2.0                 # seconds of an unchanged pane that end a job (done = idle)
    send_delay: float = 1.0           # seconds between the typed task and Enter (seed 001: 1 s)
    start_timeout: float = 30.0       # seconds a (re)started REPL gets to show its prompt
    tmux_prefix: list[str] = field(default_factory=list)  # the older spelling of agent.tmux_prefix


@frozen
class AttentionConfig(Frozen):
    """[attention]: a running job in a tmux pane that waits for a person gets the flag
    `needs input` (luzia/agents/attention.py, docs/CLI.md "Jobs that need you")."""

    enabled: bool = True
    patterns: list[str] = field(default_factory=lambda: list(ATTENTION_PATTERNS))
    idle_seconds: float = 30.0        # pane unchanged this long, last line a question: waiting; 0: off
    lines: int = 10                   # the pane's last non-blank lines searched, and shown
    check: float = 1.0                # seconds between looks at a job's pane


@frozen
class AdaptiveConfig(Frozen):
    """Adaptive credits (luzia/agents/credits.py): slots follow the GPUs' utilisation."""

    enabled: bool = False
    max_slots: int = 0                # 0: agent.slots (no growth)
    min_slots: int = 1
    util_below: float = 0.70          # GPU utilisation under this for `beats` beats: one more slot
    memory_above: float = 0.95        # GPU memory used above this: one slot fewer
    beats: int = 10                   # heartbeats the utilisation must stay low; pause after a change


@frozen
class SupervisorConfig(Frozen):
    broker: bool = True
    agent: bool = True
    backoff_initial: float = 0.5     # first restart delay, doubling ...
    backoff_max: float = 30.0        # ... up to this
    stable_after: float = 60.0       # up this long: the backoff starts again from the beginning
    flap_window: float = 60.0        # this many deaths within the window ...
    flap_deaths: int = 5             # ... make a child FATAL (flapping)
    fatal_cooldown: float = 300.0    # a FATAL child is tried again after this
    stop_timeout: float = 10.0       # SIGTERM, then SIGKILL after this
    ping_interval: float = 5.0       # health ping of each child
    ping_timeout: float = 15.0       # no answer this long: hung, killed and restarted
    start_grace: float = 10.0        # pings do not count this long after a start
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 3
    # more programs to keep running, name -> argv (e.g. `luzia import beads PATH --follow`);
    # no health ping: running once up for start_grace
    programs: dict[str, list[str]] = field(default_factory=dict)


@frozen
class WebConfig(Frozen):
    """The dashboard, luzia-web (docs/WEB.md), run by the supervisor when enabled."""

    enabled: bool = False             # `make run` turns it on (luzia-supervisor --web)
    host: str = "127.0.0.1"           # any address but loopback needs tls_cert and tls_key
    port: int = 8470                  # 0: any free port (the URL is written to run/web.url)
    tls_cert: str = ""                # PEM files; with both set the dashboard speaks https
    tls_key: str = ""
    admins: list[str] = field(default_factory=list)  # may act on every job (and the operator)
    url: str = ""                     # the address people open, when a proxy is in front
    page_size: int = 50               # jobs per list page


@frozen
class KeysConfig(Frozen):
    curve: bool = False               # CURVE on every endpoint, loopback too (else: non-local only)
    dir: str = ""                     # this host's host.key / host.key_secret; default $LUZIA_HOME/keys
    authorized: str = ""              # the broker accepts these public keys (*.key); default dir/authorized
    broker: str = ""                  # the broker's public key; default dir/broker.key


@frozen
class Project(Frozen):
    workdir: str = ""                 # "" : the job runs in its own job directory
    user: str = ""                    # owner; default: the login name
    priority: str = "normal"
    type: str = ""
    timeout: float = 0.0              # 0: no timeout
    max_retries: int = -1             # -1: the global default
    stall_after: float = -1.0         # -1: the agent's agent.stall_after
    # workspaces (docs/WORKSPACES.md): with `repo`, each job runs in its own git worktree
    repo: str = ""                    # a local path, or any URL git fetches (ssh://, https://, file://)
    base: str = ""                    # the branch, tag or commit a job starts from; "": repo's HEAD
    setup: list[str] = field(default_factory=list)   # run in a new worktree before the agent
    copy: list[str] = field(default_factory=list)    # git-ignored files copied from a local repo
    shared_concurrent: bool = False   # without repo: let jobs share `workdir` at the same time


@frozen
class Config(Frozen):
    home: str = ""
    jobs_dir: str = ""
    max_jobs: int = 1000              # finished jobs kept in history
    cache_ttl: float = 1.0            # status cache (CLI views)
    monitor_interval: float = 1.0     # refresh of live views
    admins: list[str] = field(default_factory=list)  # may submit as anyone (--user); see identity.py
    timeout: float = 0.0              # default job timeout in seconds; 0: none
    max_retries: int = 0              # default retries after a failure
    endpoints: Endpoints = field(default_factory=Endpoints)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    interactive: InteractiveConfig = field(default_factory=InteractiveConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    web: WebConfig = field(default_factory=WebConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    projects: dict[str, Project] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)   # this host's agent's accounts
    budgets: BudgetsConfig = field(default_factory=BudgetsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    source: str = ""                  # the file this was read from, "" for none

    # derived paths ---------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.home) / "run"

    @property
    def tmux_prefix(self) -> list[str]:
        """What every tmux call runs through (both tmux runners, `luzia attach`):
        agent.tmux_prefix, else its older spelling interactive.tmux_prefix."""
        return list(self.agent.tmux_prefix or self.interactive.tmux_prefix)

    @property
    def spool_dir(self) -> Path:
        return Path(self.home) / "spool"

    @property
    def log_dir(self) -> Path:
        return Path(self.home) / "log"

    def project(self, name: str) -> Project:
        try:
            return self.projects[name]
        except KeyError:
            from luzia.text import clip
            known = ", ".join(sorted(self.projects)) or "(none)"
            where = f"[projects.{name}]" if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name) else "[projects.NAME]"
            raise UsageError(f"unknown project {clip(name)}; known projects: {known} "
                             f"(declare it under {where} in {self.source or 'luzia.toml'})") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------
# loading

ENV_ALIASES = {  # short names: LUZIA_HOME, seed 001's variables, LUZIA_MAX_PENDING
    "LUZIA_HOME": ("home",),
    "LUZIA_JOBS_DIR": ("jobs_dir",),
    "LUZIA_MAX_JOBS": ("max_jobs",),
    "LUZIA_CACHE_TTL": ("cache_ttl",),
    "LUZIA_MONITOR_INTERVAL": ("monitor_interval",),
    "LUZIA_MAX_PENDING": ("broker", "max_pending"),
}


def default_home() -> str:
    if os.geteuid() == 0:
        return "/var/lib/luzia"
    import platformdirs
    return platformdirs.user_state_dir("luzia")


def config_candidates(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where the config file is looked for, first match wins."""
    env = os.environ if env is None else env
    if env.get("LUZIA_CONFIG"):
        return [Path(env["LUZIA_CONFIG"])]
    xdg = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path(xdg) / "luzia" / "luzia.toml", Path("/etc/luzia/luzia.toml")]


def load(overrides: dict[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the effective config. `overrides` is a nested dict applied last (flags)."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = ""
    for path in config_candidates(env):
        if path.is_file():
            try:
                raw = configcache.read_toml(path)    # tomllib only once per change (issue 15)
            except (OSError, ValueError) as exc:     # ValueError: TOMLDecodeError, not UTF-8
                raise ConfigError(f"cannot read config {path}: {exc}") from None
            source = str(path)
            break
        if env.get("LUZIA_CONFIG"):
            raise ConfigError(f"LUZIA_CONFIG names {path}, which does not exist")
    merge(raw, from_env(env, Config, ENV_ALIASES))
    if overrides:
        merge(raw, overrides)
    raw["source"] = source
    cfg = build(Config, raw, "")
    return _finish(cfg)


def _finish(cfg: Config) -> Config:
    """Fill in the defaults that depend on other values and check the whole."""
    home = os.path.abspath(os.path.expanduser(cfg.home or default_home()))
    run = os.path.join(home, "run")
    ep = cfg.endpoints
    endpoints = Endpoints(
        submit=ep.submit or f"ipc://{run}/submit",
        agents=ep.agents or f"ipc://{run}/agents",
        control=ep.control or f"ipc://{run}/control",
        events=ep.events or f"ipc://{run}/events",
        supervisor=ep.supervisor or f"ipc://{run}/supervisor",
        notify=ep.notify or f"ipc://{run}/notify",
    )
    for name, value in dataclasses.asdict(endpoints).items():
        check_endpoint(value, f"endpoints.{name}")
    agent = cfg.agent
    agent = dataclasses.replace(
        agent,
        name=agent.name or os.uname().nodename.split(".")[0] or "localhost",
        command=agent.command or demo_command(),
        workspace_dir=os.path.abspath(os.path.expanduser(
            agent.workspace_dir or os.path.join(home, "workspaces"))),
        tmux_socket=agent.tmux_socket or default_tmux_socket(home),
    )
    if agent.slots < 1:
        raise ConfigError("agent.slots must be at least 1")
    if not layout.tmux_socket_ok(agent.tmux_socket):
        raise ConfigError(f"agent.tmux_socket {agent.tmux_socket[:120]!r}: a tmux server name is "
                          f"1-100 letters, digits, '.', '_' or '-'")
    gitref.check_prefix(agent.branch_prefix)
    if agent.runner not in ("auto", "tmux", "subprocess", "interactive"):
        raise ConfigError("agent.runner must be auto, tmux, subprocess or interactive, "
                          f"not {agent.runner!r}")
    if agent.runner == "interactive":
        _check_interactive(cfg.interactive)
    agentconf.check(AgentCommand(agent.command, agent.format, agent.resume_argv), agent.commands,
                    cfg.accounts, cfg.limits)
    _check_attention(cfg.attention)
    adaptive = dataclasses.replace(
        cfg.adaptive, max_slots=max(cfg.adaptive.max_slots, agent.slots),
        min_slots=max(1, min(cfg.adaptive.min_slots, agent.slots)))
    projects = dict(cfg.projects)
    if not projects:
        projects["demo"] = Project()
    login = _login_name()
    from luzia.states import Priority
    for name, project in list(projects.items()):
        try:
            Priority.parse(project.priority)
        except ValueError as exc:
            raise ConfigError(f"projects.{name}.priority: {exc}") from None
        projects[name] = dataclasses.replace(
            project,
            user=project.user or login,
            workdir=os.path.abspath(os.path.expanduser(project.workdir)) if project.workdir else "",
            repo=gitref.project_repo(f"projects.{name}", project),
        )
    _check_programs(cfg.supervisor.programs)
    broker = cfg.broker
    broker = dataclasses.replace(broker, db=broker.db or os.path.join(home, "luzia.db"))
    if broker.heartbeat_interval <= 0:
        raise ConfigError("broker.heartbeat_interval must be positive")
    notify = dataclasses.replace(cfg.notify, db=cfg.notify.db or os.path.join(home, "notify.db"))
    if notify.rules or notify.targets:
        check_config(notify)
    return dataclasses.replace(
        cfg, home=home, jobs_dir=os.path.abspath(cfg.jobs_dir or os.path.join(home, "jobs")),
        endpoints=endpoints, agent=agent, broker=broker, projects=projects, adaptive=adaptive,
        keys=_keys(cfg.keys, home), notify=notify,
    )


def default_tmux_socket(home: str) -> str:
    """The agents' tmux server of one state directory (issue 17): two fleets on one host
    never share a server, so never its environment or its sessions."""
    return "luzia-" + _sha256(os.path.realpath(home).encode()).hexdigest()[:8]


def _sha256(data: bytes) -> Any:
    """SHA-256 from CPython's builtin module: hashlib loads OpenSSL (~2.5 ms), and every
    submit computes this name; hashlib where the builtin is missing."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # 3.12+
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def _check_programs(programs: dict[str, list[str]]) -> None:
    for name, argv in programs.items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name) or name in ("broker", "agent"):
            raise ConfigError(f"supervisor.programs.{name}: a program's name is a lower-case "
                              "word other than broker and agent")
        if not argv:
            raise ConfigError(f"supervisor.programs.{name}: the command is empty")


def _check_interactive(ia: InteractiveConfig) -> None:
    if not ia.command:
        raise ConfigError("interactive.command is required with agent.runner = \"interactive\" "
                          "(the REPL to start per slot, e.g. [\"claude\"])")
    if ia.done not in ("prompt", "idle", "shell"):
        raise ConfigError(f"interactive.done must be prompt, idle or shell, not {ia.done!r}")
    try:
        re.compile(ia.prompt)
    except re.error as exc:
        raise ConfigError(f"interactive.prompt is not a valid regular expression: {exc}") from None


def _check_attention(at: AttentionConfig) -> None:
    """Patterns that compile (the defaults do: not compiled here, the submit path is
    lean) and limits in range."""
    for i, pattern in enumerate(at.patterns if at.patterns != list(ATTENTION_PATTERNS) else []):
        try:
            re.compile(pattern, re.MULTILINE)
        except re.error as exc:
            raise ConfigError(f"attention.patterns[{i}] is not a valid regular expression: "
                              f"{exc}") from None
    if not 1 <= at.lines <= 50 or at.check <= 0:
        raise ConfigError("attention.lines must be 1 to 50 and attention.check positive")


def _keys(keys: KeysConfig, home: str) -> KeysConfig:
    """Absolute key paths: `dir` relative to the home, the others relative to `dir`."""
    def path(base: str, value: str) -> str:
        return os.path.abspath(os.path.join(base, os.path.expanduser(value)))
    directory = path(home, keys.dir or "keys")
    return dataclasses.replace(keys, dir=directory,
                               authorized=path(directory, keys.authorized or "authorized"),
                               broker=path(directory, keys.broker or "broker.key"))
