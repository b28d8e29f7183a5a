"""The dashboard's parts without a browser: tokens, the bind rule, CSRF, the job rule,
charts, and every page's template rendered whole and as its live fragment."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from typing import Any

import pytest
from starlette.requests import Request

from luzia import config
from luzia.errors import ConfigError, UsageError
from luzia.supervisor.__main__ import banner
from luzia.supervisor.arbiter import default_programs
from luzia.web import charts, pages, tokens
from luzia.web.__main__ import check_bind
from luzia.web.auth import Caller, csrf_for
from luzia.web.site import FRAGMENT, Web
from tests.fleet import PY


@pytest.fixture
def cfg(luzia_env):
    return config.load()


def test_tokens_are_private_rotated_and_read_again(cfg):
    store = tokens.Tokens(cfg)
    alice = store.ensure("alice")
    assert store.ensure("alice") == alice
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert len(alice) >= 32
    assert store.user_of(alice) == "alice" and store.user_of("nope") is None
    assert store.user_of("") is None
    other = tokens.Tokens(cfg)          # luzia-web's copy sees a rotation without a restart
    assert other.user_of(alice) == "alice"
    new = store.rotate("alice")
    assert new != alice
    assert other.user_of(alice) is None and other.user_of(new) == "alice"
    assert store.revoke("alice") and other.user_of(new) is None
    with pytest.raises(UsageError):
        store.ensure("no spaces please")


def test_a_damaged_token_file_says_what_to_do(cfg):
    store = tokens.Tokens(cfg)
    store.path.write_text("{not json")
    with pytest.raises(ConfigError, match="luzia web token rotate"):
        store.user_of("x")


def test_a_non_loopback_bind_needs_tls(cfg, tmp_path):
    check_bind(cfg)                                       # 127.0.0.1 by default
    for host in ("::1", "localhost", "127.0.0.2"):
        check_bind(config.load({"web": {"host": host}}))
    with pytest.raises(ConfigError, match="tls_cert"):
        check_bind(config.load({"web": {"host": "0.0.0.0"}}))
    with pytest.raises(ConfigError, match="go together"):
        check_bind(config.load({"web": {"host": "0.0.0.0", "tls_cert": "/x"}}))
    with pytest.raises(ConfigError, match="no file"):
        check_bind(config.load({"web": {"host": "0.0.0.0", "tls_cert": "/nope", "tls_key": "/nope"}}))
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    check_bind(config.load({"web": {"host": "0.0.0.0", "tls_cert": str(cert), "tls_key": str(key)}}))


def test_luzia_web_refuses_a_public_bind_in_one_line(luzia_env):
    out = subprocess.run([PY, "-m", "luzia.web", "--host", "0.0.0.0"], capture_output=True,
                         timeout=60)
    assert out.returncode == 2
    err = out.stderr.decode().strip()
    assert err.startswith("luzia-web: web.host 0.0.0.0 is not a loopback address")
    assert "ssh -L" in err and len(err.splitlines()) == 1


def test_csrf_tokens_follow_the_token_and_the_job_rule():
    assert csrf_for("a") != csrf_for("b") and csrf_for("a") == csrf_for("a")
    bob = Caller("bob", False, "x")
    admin = Caller("root", True, "y")
    assert bob.may_act({"user": "bob"}) and bob.may_act({"user": "ci", "submitter": "bob"})
    assert not bob.may_act({"user": "alice"})
    assert admin.may_act({"user": "alice"})
    running = {"user": "bob", "state": "running"}
    assert pages.actions(running, bob) == ["cancel"]
    assert pages.actions({"user": "bob", "state": "failed"}, bob) == ["retry"]
    assert pages.actions({"user": "bob", "state": "paused"}, bob) == ["cancel", "retry"]   # a usage limit
    assert pages.usage({"cost_usd": 0.5, "tokens_in": 1200, "tokens_out": 0}) == [
        ("cost", 0.5), ("tokens in", 1200)]
    assert pages.actions({"user": "bob", "state": "completed", "branch": "luzia/x"}, bob) == []
    assert pages.actions({"user": "bob", "state": "completed"}, bob) == []
    assert pages.actions(running, Caller("eve", False, "z")) == []


def test_the_supervisor_runs_the_dashboard_when_enabled(cfg):
    assert "web" not in [p.name for p in default_programs(cfg)]
    on = config.load({"web": {"enabled": True}})
    web = [p for p in default_programs(on) if p.name == "web"][0]
    assert web.argv[1:] == ["-m", "luzia.web"] and web.ping.endswith("/run/web")
    lines = banner(on, ["broker", "agent", "web"])
    url = [line for line in lines if "dashboard" in line][0].split()[-1]
    assert url.startswith("http://127.0.0.1:8470/?token=")
    assert tokens.Tokens(on).user_of(url.split("token=")[1]) == tokens.operator()


def test_a_chart_is_svg_with_escaped_labels():
    svg = charts.bars("runs", ["2026-01-01", "2026-01-02"], [
        charts.Series("ok<b>", "ok", [3, 0]), charts.Series("failed", "bad", [1, 2])])
    assert svg.startswith("<svg") and svg.count("<rect") == 3
    assert "ok<b>" not in svg and "ok&lt;b&gt;" in svg
    assert "no finished jobs" in charts.bars("runs", [], [])


def request(path: str, fragment: bool = False, query: str = "") -> Request:
    headers = [(FRAGMENT.encode(), b"1")] if fragment else []
    return Request({"type": "http", "method": "GET", "path": path, "query_string": query.encode(),
                    "headers": headers})


JOB = {"id": "101010-abcdefabcdef", "state": "running", "project": "demo", "user": "bob",
       "priority": "high", "type": "code", "task": "fix <script>alert(1)</script>", "host": "gpu1",
       "progress": 40.0, "message": "half", "why": "", "stalled": False, "after": [],
       "metadata": {"k": "v"}, "workdir": "", "submitted_at": time.time() - 60,
       "started_at": time.time() - 30, "attempt": 1, "retries": 0, "max_retries": 0,
       "tail": ["line \x1b[31mred\x1b[0m"], "attempts": [{"attempt": 1, "host": "gpu1"}],
       "needs_input": {"lines": ["Proceed? (y/n)"]}, "cost": 0.42,
       "tokens": {"input": 1200, "output": 300}}
AGENT = {"name": "gpu1", "health": "ok", "slots": 2, "running": 1, "cpu": 0.5, "memory": 0.2,
         "load": 0.3, "gpu_total_gb": 24.0, "gpu_free_gb": 10.0, "heartbeat_age": 0.4, "tags": []}


@pytest.mark.parametrize("name", ["fleet.html", "jobs.html", "history.html", "job.html", "stats.html"])
def test_every_page_renders_whole_and_as_its_live_fragment(cfg, name):
    web = Web(cfg, health=False)
    caller = Caller("bob", False, "csrf-value")
    listing = {"jobs": [JOB], "total": 1, "by_state": {"running": 1}, "page": 1, "first": 1,
               "last": 1, "newer": "", "older": "", "query": {}, "states": [],
               "state_names": ["running"]}
    contexts: dict[str, dict[str, Any]] = {
        "fleet.html": dict(status={"jobs": {"running": 1}}, queue={"pending": 0, "running": 1,
                           "oldest_wait": 0, "jobs": [JOB]}, by_priority=[("high", 1)],
                           agents=[AGENT], running=[JOB], deepest=1),
        "jobs.html": listing, "history.html": listing,
        "job.html": dict(job=JOB, diff=None, actions=["cancel"], flash="",
                         attention=pages.attention(JOB), usage=pages.usage(JOB)),
        "stats.html": dict(data={"total": {"jobs": 2, "completed": 1}, "by_user": [], "by_project": []},
                           charts=[("Runs", charts.bars("r", ["2026-01-01"],
                                                        [charts.Series("a", "ok", [1])]))],
                           days=14),
    }
    context = contexts[name]
    whole = bytes(web.render(request("/x"), name, caller=caller, live="x", **context).body).decode()
    part = bytes(web.render(request("/x", fragment=True), name, caller=caller, live="x",
                            **context).body).decode()
    assert "<html" in whole and "<html" not in part and part.strip()
    assert part.strip() in whole.replace("\n", "\n")
    assert "<script>alert" not in whole                       # escaped, always
    if name == "job.html":
        assert "Proceed? (y/n)" in part and "$0.42" in part and "1,200" in part
        assert 'name="csrf" value="csrf-value"' in part
        assert "\x1b" not in whole


def test_a_workspace_jobs_page_shows_its_branch_and_worktree(cfg):
    job = {**JOB, "state": "completed", "needs_input": None, "repo": "/src/x", "base": "main",
           "base_commit": "ab" * 20, "branch": "luzia/101010-abcdefabcdef",
           "workspace": "/h/workspaces/demo/101010-abcdefabcdef", "workspace_host": "gpu1",
           "files_changed": 2, "lines_added": 3, "lines_removed": 1, "push": "", "outcome": ""}
    page = bytes(Web(cfg, health=False).render(
        request("/x", fragment=True), "job.html", caller=Caller("bob", False, "c"), live="x",
        job=job, diff=None, actions=pages.actions(job, Caller("bob", False, "c")), flash="",
        attention=None, usage=[]).body).decode()
    assert "luzia/101010-abcdefabcdef" in page and "2 files, +3 −1" in page
    assert "gpu1:/h/workspaces/demo/101010-abcdefabcdef" in page and "main @ abababab" in page
    assert "luzia merge 101010-abcdefabcdef" in page and "not merged" in page


def run(coro: Any) -> Any:
    """A coroutine's result, on a thread of its own (the session's browser runs a loop here)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_a_finished_jobs_diff_comes_from_its_snapshots(tmp_path):
    from luzia import snapshots
    from luzia.web.diff import job_diff
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.txt").write_text("one\n")
    job = {"id": "101010-abcdefabcdef", "state": "completed", "workdir": str(repo)}
    snapshots.record(str(repo), job["id"], "before")
    (repo / "a.txt").write_text("two\n")
    snapshots.record(str(repo), job["id"], "after")
    diff = run(job_diff(job))
    assert diff is not None and "-one" in diff.text and "+two" in diff.text
    assert "a.txt" in diff.stat and not diff.cut
    assert run(job_diff({**job, "state": "running"})) is None      # not finished yet
    assert run(job_diff({**job, "workdir": str(tmp_path / "gone")})) is None
    given = run(job_diff({**job, "diff": "+from the broker"}))
    assert given is not None and given.source == "broker"


def test_a_post_from_another_origin_or_without_csrf_is_refused(cfg):
    from luzia.web.auth import Auth, Refused
    auth = Auth(config.load({"web": {"url": "https://luzia.example.org"}}), tokens.Tokens(cfg))
    me = Caller("bob", False, csrf_for("t"))

    def post(origin: str | None, host: str = "127.0.0.1:8470") -> Request:
        headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
        return Request({"type": "http", "method": "POST", "path": "/jobs/x/cancel",
                        "query_string": b"", "headers": headers})
    good = {"csrf": csrf_for("t")}
    auth.check_post(post(None), me, good)                         # no Origin: the CSRF token decides
    auth.check_post(post("http://127.0.0.1:8470"), me, good)
    auth.check_post(post("https://luzia.example.org", "127.0.0.1:8470"), me, good)   # behind a proxy
    for origin in ("null", "http://evil.example", "http://127.0.0.1:9999"):
        with pytest.raises(Refused):
            auth.check_post(post(origin), me, good)
    with pytest.raises(Refused):
        auth.check_post(post(None), me, {"csrf": csrf_for("other")})
    auth.check_post(post("http://evil.example"), Caller("bob", False, "x", bearer=True), {})
