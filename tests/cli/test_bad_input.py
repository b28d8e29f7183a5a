"""Bad input on the submit path: one line on stderr, exit 2, and nothing written to the spool
(issue 17 item 10). The named cases run the real `luzia` with real argv bytes; hypothesis then
fuzzes every argument of `luzia PROJECT TASK...` in-process against a spool with no broker."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from luzia import protocol
from luzia.cli.names import COMMANDS
from tests.cli.conftest import PROJECTS, PY, make_home

LINE_MAX = 600      # characters of the one error line, whatever was typed


def cli_bytes(home, *argv: bytes):
    """`luzia ARGV` with argv as raw bytes, as a shell passes what was typed."""
    return subprocess.run([PY, "-m", "luzia.cli", *argv], env=home.env, capture_output=True,
                          timeout=20, stdin=subprocess.DEVNULL)


def spool_entries(home) -> list[str]:
    spool = home.path / "spool"
    return sorted(os.listdir(spool)) if spool.exists() else []


def refused_in_one_line(out, *words: bytes) -> str:
    err = out.stderr.decode(errors="replace")
    assert out.returncode == 2, err
    assert err.startswith("luzia: ") and err.count("\n") == 1 and len(err) < LINE_MAX, err[:2000]
    assert "Traceback" not in err and not out.stdout
    for word in words:
        assert word.decode() in err, err
    return err


@pytest.mark.parametrize("argv, words", [
    ([b"demo", b"fix caf\xe9 menu"], [b"task", b"UTF-8", b"0xe9"]),          # a latin-1 terminal
    ([b"demo", b"x", b"--user", b"b\xffb"], [b"--user", b"UTF-8"]),
    ([b"demo", b"x", b"--type", b"c\xffde"], [b"--type", b"UTF-8"]),
    ([b"demo", b"x", b"--metadata", b'{"a": "\xff"}'], [b"--metadata", b"UTF-8"]),
    ([b"demo", b"x", b"--metadata", b'{"a": "\\ud800"}'], [b"--metadata", b"text"]),  # a JSON escape
    ([b"de\xffmo", b"x"], [b"project"]),
])
def test_text_that_is_not_utf8_is_one_line_and_exit_2(home, argv, words):
    refused_in_one_line(cli_bytes(home, *argv), *words)
    assert spool_entries(home) == []


@pytest.mark.parametrize("depth", [40, 10_000])
def test_metadata_nested_too_deep_is_one_line_and_exit_2(home, depth):
    nested = '{"a": ' * depth + "1" + "}" * depth
    refused_in_one_line(home.cli("demo", "x", "--metadata", nested), b"--metadata", b"nested")
    assert spool_entries(home) == []


@pytest.mark.parametrize("argv", [
    ["p" * 100_000, "x"],                                # an unknown project, named once, cut
    ["demo", "x", "--priority", "1" * 100_000],
    ["demo", "x", "--after", "1" * 100_000],
    ["demo", "x", "--user", "u" * 100_000],
    ["demo", "x", "--type", "t" * 100_000],
    ["demo", "x", "--timeout", "9" * 100_000],
    ["demo", "x", "--max-retries", "9" * 100_000],
    ["demo", "x", "--bogus", "b" * 100_000],
])
def test_a_huge_argument_is_not_echoed_in_full(home, argv):
    err = refused_in_one_line(home.cli(*argv))
    assert err.count("p" * 30) <= 1
    assert spool_entries(home) == []


def test_a_task_too_long_for_the_wire_is_one_line_and_exit_2(home):
    refused_in_one_line(home.cli("demo", "x" * (protocol.MAX_TASK + 1)), b"task")
    assert spool_entries(home) == []


# -- fuzzing: every argument, in-process -------------------------------------------------------

argv_text = st.one_of(
    st.text(max_size=30),
    st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape")),  # as argv arrives
    st.sampled_from(["--", "-", "--json", "-x", "", " ", "\n", "0", "-1", "nan", "inf", "1e999",
                     "101010-0123456789ab", "101010", "{}", "[]", "null", '{"a": 1}']),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=20)
metadata = st.one_of(json_values.map(json.dumps), argv_text,
                     st.integers(1, 3000).map(lambda n: '{"a": ' * n + "0" + "}" * n))
option = st.one_of(
    st.tuples(st.sampled_from(["--priority", "--type", "--user", "--timeout", "--max-retries",
                               "--after"]), argv_text),
    st.tuples(st.just("--metadata"), metadata),
    st.just(("--json",)),
    st.tuples(argv_text),
)
projects = (st.sampled_from(["demo", "overbits"]) | argv_text).filter(   # the submit path's
    lambda p: not p.startswith("-") and p not in COMMANDS)                # first word
argvs = st.tuples(projects,
                  st.lists(argv_text, max_size=4), st.lists(option, max_size=4))


@pytest.fixture(scope="module")
def fuzz_home():
    root = Path(tempfile.mkdtemp(prefix="lzf", dir="/tmp"))
    home = make_home(root, PROJECTS)
    yield home
    import shutil
    shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(parts=argvs)
@example(parts=("demo", ["--help"], []))          # found by this test once: the help, exit 0
@example(parts=("demo", ["0", "-n"], []))         # and this: a dry run, nothing spooled
def test_fuzzed_arguments_are_a_job_or_one_line_never_a_traceback(fuzz_home, parts):
    project, words, options = parts
    argv = [project, *words, *(item for opt in options for item in opt)]
    before = set(spool_entries(fuzz_home))
    out, err = io.StringIO(), io.StringIO()
    from luzia.cli.main import main
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUZIA_")}
    env.update({k: v for k, v in fuzz_home.env.items() if k.startswith("LUZIA_")})
    with mock.patch.dict(os.environ, env, clear=True), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:          # -h/--help among the options: the help, exit 0
            assert exc.code == 0 and {"-h", "--help"} & set(argv), (exc.code, argv)
            assert "usage: luzia PROJECT TASK" in out.getvalue()
            assert set(spool_entries(fuzz_home)) == before
            return
    after = set(spool_entries(fuzz_home))
    new = sorted(after - before)
    lines = err.getvalue().splitlines()
    assert code in (0, 2, 3), (code, argv, err.getvalue()[:500])
    assert all(len(line) < LINE_MAX for line in lines), lines
    assert not [n for n in after if n.endswith(".tmp")]
    dry_run = '"dry_run": true' in out.getvalue() or "dry run: nothing was queued" in out.getvalue()
    if code == 0 and dry_run:             # -n / --dry-run among the options: nothing queued
        assert new == [], new
    elif code == 0:
        assert len(new) == 1, new          # one whole job, which the broker will decode
        spooled = protocol.spool_load((fuzz_home.path / "spool" / new[0]).read_bytes())
        assert spooled.job.id in out.getvalue() and out.getvalue().count("\n") == 1
        os.unlink(fuzz_home.path / "spool" / new[0])
    else:
        assert len(lines) == 1 and lines[0].startswith("luzia: "), (argv, err.getvalue()[:500])
        assert not out.getvalue() and not new


@pytest.mark.parametrize("argv", [
    [b"jobs", b"\xff"], [b"cancel", b"12\xff"], [b"logs", b"\xff"], [b"history", b"--user", b"\xff"],
    [b"stats", b"--project", b"\xff"], [b"jobs", b"--user", b"\xff"], [b"agents", b"drain", b"\xff"],
])
def test_commands_given_text_that_is_not_utf8_are_one_line_and_exit_2(home, fake, argv):
    refused_in_one_line(cli_bytes(home, *argv), b"UTF-8")


def test_a_huge_job_id_is_named_cut_in_the_brokers_answer():
    from luzia.broker.ops.request import resolve
    from luzia.errors import NotFound
    from tests.broker.harness import make_model
    m = make_model()
    try:
        for ident in ("1" * 100_000, "x" * 100_000):
            with pytest.raises(NotFound) as err:
                resolve(m, ident)
            assert len(str(err.value)) < 100
    finally:
        m.store.close()
