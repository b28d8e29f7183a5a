"""[notify] in the config: rules checked at load, and matched against events."""

from __future__ import annotations

import pytest

from luzia import config
from luzia.errors import ConfigError
from luzia.notify.events import NotifyEvent, Rules
from luzia.notifyconf import KINDS, kind_name
from luzia.supervisor.arbiter import default_programs


def load(short_tmp, text: str) -> config.Config:
    path = short_tmp / "luzia.toml"
    path.write_text(f'home = "{short_tmp}/h"\n{text}')
    return config.load(env={"LUZIA_CONFIG": str(path)})


NOTIFY = """
[notify.targets]
ops = "slack://a/b/c"
me = "ntfy://ntfy.sh/topic"
"""


def test_rules_load_and_the_supervisor_runs_the_notifier_beside_the_broker(short_tmp):
    cfg = load(short_tmp, NOTIFY + '[[notify.rules]]\nevents = ["Needs-Input", "failed"]\n'
                                   'targets = ["me"]\nprojects = ["overbits"]\n')
    assert cfg.notify.rules[0].projects == ["overbits"]
    assert cfg.notify.db == f"{short_tmp}/h/notify.db"
    assert cfg.endpoints.notify == f"ipc://{short_tmp}/h/run/notify"
    names = [p.name for p in default_programs(cfg)]
    assert names == ["broker", "agent", "notify"]
    notify = default_programs(cfg)[-1]
    assert notify.argv[1:] == ["-m", "luzia.notify"] and notify.ping == cfg.endpoints.notify


def test_no_rules_no_notifier_and_none_without_a_broker_here(short_tmp):
    assert [p.name for p in default_programs(load(short_tmp, NOTIFY))] == ["broker", "agent"]
    cfg = load(short_tmp, NOTIFY + '[supervisor]\nbroker = false\n'
                                   '[[notify.rules]]\nevents = ["failed"]\ntargets = ["me"]\n')
    assert [p.name for p in default_programs(cfg)] == ["agent"]


@pytest.mark.parametrize("rule, complaint", [
    ('events = ["exploded"]\ntargets = ["me"]', "unknown event 'exploded'; known: completed"),
    ('events = []\ntargets = ["me"]', "no events"),
    ('events = ["failed"]\ntargets = []', "no targets"),
    ('events = ["failed"]\ntargets = ["pager"]', "unknown target 'pager'; [notify.targets] has me, ops"),
])
def test_a_rule_that_cannot_work_is_a_config_error(short_tmp, rule, complaint):
    with pytest.raises(ConfigError, match="notify.rules\\[0\\]: " + complaint.replace("[", "\\[")
                       .replace("]", "\\]").replace("(", "\\(")):
        load(short_tmp, NOTIFY + f"[[notify.rules]]\n{rule}\n")


def test_a_target_that_is_not_a_url_is_a_config_error(short_tmp):
    with pytest.raises(ConfigError, match="notify.targets.x: 'hooks.example' is not an Apprise URL"):
        load(short_tmp, '[notify.targets]\nx = "hooks.example"\n')


def rules(*specs: tuple) -> Rules:
    from luzia.notifyconf import NotifyConfig, NotifyRule
    return Rules(NotifyConfig(targets={t: "json://x/" for s in specs for t in s[1]},
                              rules=[NotifyRule(events=list(e), targets=list(t), users=list(u),
                                                projects=list(p)) for e, t, u, p in specs]))


def job_event(kind: str, user: str = "alice", project: str = "overbits") -> NotifyEvent:
    return NotifyEvent(kind, f"k/{kind}", job={"id": "x", "user": user, "project": project})


def test_rules_pick_targets_by_event_user_and_project():
    r = rules((["failed", "killed"], ["ops"], [], ["overbits"]),
              (["failed"], ["me", "ops"], ["alice"], []),
              (["agent_dead"], ["ops"], [], []),
              (["agent_dead"], ["me"], ["alice"], []))
    assert r.kinds == {"failed", "killed", "agent_dead"}
    assert r.targets_for(job_event("failed")) == ["ops", "me"]          # each target once
    assert r.targets_for(job_event("failed", user="bob")) == ["ops"]
    assert r.targets_for(job_event("failed", user="bob", project="other")) == []
    assert r.targets_for(job_event("completed")) == []
    # a fleet event has no user or project: only rules without those filters take it
    assert r.targets_for(NotifyEvent("agent_dead", "a/1", subject="gpu1")) == ["ops"]


def test_kind_names_have_one_spelling():
    assert kind_name(" Needs-Input ") == "needs_input"
    assert all(kind_name(k) == k for k in KINDS)
