"""[supervisor.programs]: an operator's own programs (a Beads watcher, …) kept running by
the supervisor beside the broker and the agent."""

from __future__ import annotations

import pytest

from luzia import config
from luzia.errors import ConfigError
from luzia.supervisor.arbiter import default_programs


def load(tmp_path, text: str) -> config.Config:
    path = tmp_path / "luzia.toml"
    path.write_text(f'home = "{tmp_path}"\n{text}')
    return config.load(env={"LUZIA_CONFIG": str(path)})


def test_programs_come_after_the_broker_and_agent_with_no_ping(tmp_path):
    cfg = load(tmp_path, '[supervisor.programs]\nbeads = ["luzia", "import", "beads", "/srv/x", '
                         '"--follow"]\nzz-other = ["sleep", "1000"]\n')
    programs = default_programs(cfg)
    assert [p.name for p in programs] == ["broker", "agent", "beads", "zz-other"]
    assert programs[2].argv == ["luzia", "import", "beads", "/srv/x", "--follow"]
    assert programs[2].ping == ""


@pytest.mark.parametrize(("text", "error"), [
    ('[supervisor.programs]\nbroker = ["x"]\n', "other than broker and agent"),
    ('[supervisor.programs]\n"Bad Name" = ["x"]\n', "a lower-case word"),
    ('[supervisor.programs]\nbeads = []\n', "the command is empty"),
    ('[supervisor.programs]\nbeads = "luzia import beads"\n', "expected a list"),
])
def test_bad_programs_are_one_line_config_errors(tmp_path, text, error):
    with pytest.raises(ConfigError, match=error):
        load(tmp_path, text)
