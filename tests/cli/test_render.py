"""Unit tests of the CLI's pieces that need no broker: the submit parser, the shared
rendering helpers, the job views (luzia/cli/jobs.py) and the log sink (logs.py)."""

from __future__ import annotations

import io
import time

import pytest

from luzia.cli import job_views as jobs, logs, render
from luzia.cli.submit import parse
from luzia.errors import UsageError


def test_parse_options_anywhere_and_equals_form():
    args = parse(["demo", "fix", "--priority=high", "the", "bug", "--after", "a,b", "--after=c",
                  "--timeout", "1.5", "--max-retries", "2", "--json", "--metadata", '{"k": [1]}'])
    assert args.project == "demo" and args.task == ["fix", "the", "bug"]
    assert args.priority == "high" and args.after == ["a", "b", "c"] and args.timeout == 1.5
    assert args.max_retries == 2 and args.json and args.metadata == {"k": [1]}
    defaults = parse(["demo", "x"])
    assert (defaults.priority, defaults.type, defaults.user, defaults.timeout, defaults.max_retries,
            defaults.after, defaults.metadata, defaults.json) == (None,) * 5 + ([], None, False)


def test_parse_double_dash_keeps_every_word_after_it():
    args = parse(["demo", "run", "--", "-v", "--", "--priority", "low", "--json"])
    assert args.task == ["run", "-v", "--", "--priority", "low", "--json"] and args.priority is None
    assert not args.json
    assert parse(["demo", "-1", "x"]).task == ["-1", "x"]     # a negative number is a word


@pytest.mark.parametrize("argv, message", [
    (["demo"], "the task is empty"),
    (["demo", "", " "], "the task is empty"),
    (["demo", "x", "--priority", "urgent"], "invalid choice"),
    (["demo", "x", "--timeout", "0"], "more than 0"),
    (["demo", "x", "--metadata", "1"], "JSON object"),
    (["demo", "x", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["demo", "run", "-v"], r"unrecognized arguments: -v \(put -- before"),
    (["demo", "x", "--prio", "low"], "unrecognized arguments: --prio"),     # no abbreviations
])
def test_parse_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        parse(argv)


def job(**over):
    base = {"id": "120000-0123456789ab", "state": "running", "project": "demo", "user": "alice",
            "priority": "normal", "type": "code", "host": "gpu1", "progress": 30.0,
            "message": "working", "task": "do it", "submitted_at": time.time() - 90,
            "started_at": time.time() - 60, "finished_at": None, "attempt": 1, "max_retries": 0,
            "why": "", "reason": "", "exit_code": None, "tail": []}
    base.update(over)
    return base


def test_the_progress_bar_and_status_line():
    assert render.bar(30) == "[██████░░░░░░░░░░░░░░] 30%"
    assert render.bar(-1) == "[" + "·" * 20 + "]"
    assert jobs.status_line(job()) == "RUNNING [██████░░░░░░░░░░░░░░] 30% working"


def test_plain_views_neutralise_escapes_and_controls():
    hostile = job(message="\x1b[31mred\x1b[0m\r\nnext\x07", task="\x1b]0;title\x07x",
                  tail=["\x1b[2Jclear"], host="h\x1bost", user="[bold]bob[/]")
    text = jobs.plain_table([hostile]) + "\n".join(jobs.job_lines(hostile))
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "red next" in text and "[bold]bob[/]" in text


def test_rich_views_on_a_terminal_use_no_escape_from_the_job():
    from rich.console import Console
    hostile = job(state="pending", why="\x1b[31mred\x1b[0m why", user="[red]bob[/red]")
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=200)
    console.print(jobs.rich_table([hostile]))
    console.print(jobs.rich_job(hostile))
    text = out.getvalue()
    assert "\x1b[31m" not in text          # red would come only from the job's text
    assert "[red]bob[/red]" in text        # markup in a job's text stays text
    assert "\x1b[33m" in text              # the state's own colour (pending: yellow)


def test_fancy_only_on_a_terminal_without_no_color(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert render.fancy(Tty()) and not render.fancy(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not render.fancy(Tty())


class Pipe:
    """A non-terminal stdout with a bytes buffer."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def isatty(self) -> bool:
        return False


def test_log_sink_strips_escapes_split_across_reads():
    pipe = Pipe()
    sink = logs.LogSink(pipe)
    data = "a\x1b[31mred\x1b[0m é\r\nb\x1b]0;t\x07c\n".encode()
    for i in range(len(data)):            # one byte per read: every split point
        sink.write(data[i:i + 1])
    sink.close()
    assert pipe.buffer.getvalue().decode() == "ared é\nbc\n"


def test_log_sink_is_raw_on_a_terminal():
    pipe = Pipe()
    pipe.isatty = lambda: True  # type: ignore[method-assign]
    sink = logs.LogSink(pipe)
    sink.write(b"\x1b[31mred\x1b[0m")
    assert pipe.buffer.getvalue() == b"\x1b[31mred\x1b[0m"


def test_malformed_fields_from_the_network_do_not_break_the_views():
    odd = job(progress="half", submitted_at="yesterday", started_at=True, finished_at=float("nan"),
              attempt=None, max_retries="3", retries=[], tail="not a list", state=["running"],
              exit_code={"x": 1}, attempts=[{"attempt": "1", "host": 7}, "junk", {}, {"exit_code": 2}])
    text = jobs.plain_table([odd]) + "\n".join(jobs.job_lines(odd))
    assert "[··········]" in text and "(never started (1 allowed))" in text
    jobs.rich_table([odd])
    jobs.rich_job(odd)
