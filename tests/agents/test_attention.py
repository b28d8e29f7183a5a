"""What counts as a pane waiting for a person (luzia/agents/attention.py): the default
patterns on real prompts' screens, the two-look rule, an answer's hush, the idle question."""

from __future__ import annotations

import pytest

from luzia.agents.attention import Detector, Screen, Watch, window
from luzia.config import ATTENTION_PATTERNS as PATTERNS

# Claude Code's permission dialog as a 60-column pane shows it (its box drawn with U+2500s)
CLAUDE_DIALOG = """\
● I'll remove the build directory.

╭──────────────────────────────────────────────────────────╮
│ Bash command                                             │
│                                                          │
│   rm -rf build                                           │
│   Remove the build output                                │
│                                                          │
│ Do you want to proceed?                                  │
│ ❯ 1. Yes                                                 │
│   2. Yes, and don't ask again for rm commands            │
│   3. No, and tell Claude what to do differently (esc)    │
╰──────────────────────────────────────────────────────────╯""".splitlines()

ASKING = [
    CLAUDE_DIALOG,
    ["Installing...", "Do you want to continue? [Y/n]"],
    ["Proceed? (y/n)"],
    ["Overwrite config.yml? (yes/no):"],
    ["Ready to deploy.", "Proceed?"],
    ["Press Enter to continue..."],
    ["Do you trust the files in this folder?", "", " ❯ 1. Yes, proceed", "   2. No, exit"],
]
NOT_ASKING = [
    ["Proceed? (y/n) y", "ok, proceeding"],       # answered: the line does not end the screen
    ["the flag (y/n) is parsed first", "done"],
    ["> "],
    ["all tests passed"],
    ["Shall I go on?", "thinking..."],            # a question, but the program goes on
]


@pytest.fixture
def detector() -> Detector:
    return Detector(PATTERNS, lines=10)


@pytest.mark.parametrize("lines", ASKING)
def test_the_default_patterns_see_prompts(detector, lines):
    assert detector.asking(lines)


@pytest.mark.parametrize("lines", NOT_ASKING)
def test_the_default_patterns_leave_other_screens_alone(detector, lines):
    assert not detector.asking(lines)


def test_the_window_is_the_last_non_blank_lines_without_borders():
    assert window(["a", "│ b │", "", "╰──╯", "  c  ", ""], 2) == ["b", "c"]
    assert window(["x" * 400], 1) == ["x" * 300]


def look(watch: Watch, lines: list[str], now: float, answered: str = "") -> str:
    return watch.look(Screen(lines, answered), now)


def test_a_prompt_raises_the_flag_on_its_second_look_and_drops_when_the_pane_moves_on(detector):
    watch = Watch(detector)
    assert look(watch, ["working"], 0) == ""
    assert look(watch, ["working", "Proceed? (y/n)"], 1) == ""     # one look: maybe passing by
    assert look(watch, ["working", "Proceed? (y/n)"], 2) == "up"
    assert watch.flagged and watch.lines == ["working", "Proceed? (y/n)"]
    assert watch.next_check == 2 + watch.check
    assert look(watch, ["working", "Proceed? (y/n)"], 3) == ""
    assert look(watch, ["working", "Proceed? (y/n) y", "done"], 4) == "down"
    assert not watch.flagged and watch.lines == []


def test_text_streaming_past_raises_nothing(detector):
    watch = Watch(detector)
    for now, line in enumerate(["Proceed? (y/n)", "Proceed? (y/n) y", "Proceed? (y/n)", "x"]):
        assert look(watch, ["log", line], now) == ""


def test_a_dialog_that_changes_its_choice_stays_up_with_the_new_lines(detector):
    watch = Watch(detector)
    look(watch, CLAUDE_DIALOG, 0)
    assert look(watch, CLAUDE_DIALOG, 1) == "up"
    moved = [line.replace("❯ 1.", "  1.").replace("  2. Yes", "❯ 2. Yes") for line in CLAUDE_DIALOG]
    assert look(watch, moved, 2) == "lines"
    assert any("❯ 2. Yes" in line for line in watch.lines)


def test_an_answer_drops_the_flag_even_when_the_screen_stays_and_a_new_screen_may_ask_again(detector):
    watch = Watch(detector)
    prompt = ["Continue? [Y/n]"]
    assert look(watch, prompt, 0, answered="old job 1.0") == ""   # a mark from before: not ours
    assert look(watch, prompt, 1, answered="old job 1.0") == "up"
    assert look(watch, prompt, 2, answered="job 2.0") == "down"      # `luzia reply` pressed Enter
    assert look(watch, prompt, 3, answered="job 2.0") == ""          # the same screen: hushed
    assert look(watch, [*prompt, "Continue? [Y/n]"], 4, answered="job 2.0") == ""
    assert look(watch, [*prompt, "Continue? [Y/n]"], 5, answered="job 2.0") == "up"


def test_an_idle_pane_whose_last_line_is_a_question_waits_for_a_person(detector):
    watch = Watch(detector, idle_seconds=30)
    question = ["I found two configs.", "Which one should I use?"]
    assert look(watch, question, 0) == ""
    assert look(watch, question, 29) == ""
    assert look(watch, question, 30) == "up"
    assert look(watch, [*question, "the first"], 31) == "down"
    other = Watch(detector, idle_seconds=30)
    assert look(other, ["still working"], 0) == "" and look(other, ["still working"], 60) == ""
    off = Watch(detector, idle_seconds=0)
    assert look(off, question, 0) == "" and look(off, question, 1000) == ""


def test_a_pane_that_is_gone_is_not_waiting(detector):
    watch = Watch(detector)
    look(watch, ["Proceed?"], 0)
    assert look(watch, ["Proceed?"], 1) == "up"
    assert watch.look(None, 2) == "down"


def test_the_settings_are_checked_at_load(short_tmp):
    from luzia import config
    from luzia.errors import ConfigError
    env = {"LUZIA_HOME": str(short_tmp / "h")}
    assert config.load(env=env).attention.patterns == list(PATTERNS)
    with pytest.raises(ConfigError, match=r"attention.patterns\[1\] is not a valid regular"):
        config.load(overrides={"attention": {"patterns": ["ok", "(unclosed"]}}, env=env)
    with pytest.raises(ConfigError, match="attention.lines must be 1 to 50"):
        config.load(overrides={"attention": {"lines": 0}}, env=env)


class PaneRunner:
    """A runner whose one job's pane shows what the test says (no tmux): held.py's view."""

    name = "tmux"

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def alive(self, job) -> bool:
        return True

    def pane(self, job) -> str:
        return "\n".join(self.lines)

    def screen(self, job) -> Screen:
        return Screen(self.lines)


def test_the_agent_reports_the_flag_and_a_waiting_job_never_stalls(tmp_path):
    from luzia import protocol
    from luzia.agents import stall
    from luzia.agents.held import HeldJobs, Run
    from luzia.agents.jobdir import JobDir
    from luzia.config import Config
    runner = PaneRunner(["working"])
    sent: list[protocol.Message] = []
    held = HeldJobs(Config(), runner, sent.append)  # type: ignore[arg-type]
    job = JobDir(tmp_path, "130000-aaaaaaaaaaaa")
    job.path.mkdir(parents=True)
    run = Run(dir=job, attempt=1, stall=stall.StallWatch(after=5.0, kill=True),
              attention=Watch(Detector(PATTERNS), check=1.0))
    held.jobs[run.id] = run
    reports = []
    for now in range(60):                       # a minute of looks, the pane asking from 3 on
        if now == 3:
            runner.lines = ["working", "Proceed? (y/n)"]
        held.watch(float(now))
        reports += [(now, m.needs_input, m.stalled) for m in sent if isinstance(m, protocol.Progress)]
        sent.clear()
    assert [r for r in reports if r[1]][:1] == [(4, True, False)]     # two looks at the prompt
    assert not any(stalled for _, _, stalled in reports)
    assert run.stall is not None and not run.stall.stalled and run.state.value == "running"
    runner.lines = ["working", "Proceed? (y/n) y", "done"]
    held.watch(60.0)
    progress = [m for m in sent if isinstance(m, protocol.Progress)]
    assert progress and progress[-1].needs_input is False and progress[-1].needs_input_lines == []
