"""The submit's quick reading of its command line (luzia/cli/submit.py, without argparse)
gives what argparse gives, and leaves to argparse whatever it is not sure of (issue 15)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from luzia.cli import submit
from luzia.cli.submit_args import parser
from luzia.errors import UsageError
from luzia.states import PRIORITY_WORDS
from tests.helpers import examples


def argparse_reads(argv: list[str]) -> dict | None:
    """argparse's reading, or None for a command line it refuses (or --help)."""
    try:
        return vars(parser().parse_intermixed_args(argv))
    except (UsageError, SystemExit):
        return None


def same(quick: object, theirs: dict) -> bool:
    # repr: a NaN in --metadata is not equal to itself
    return repr(sorted(vars(quick).items())) == repr(sorted(theirs.items()))


def test_the_quick_reading_knows_every_option_of_the_parser():
    options = {s for a in parser()._actions for s in a.option_strings} - {"-h", "--help"}
    assert options == {*submit.VALUED, *submit.FLAGS}


words = st.text(max_size=12).filter(lambda w: not w.startswith("-"))
VALUES = {
    "--priority": st.sampled_from(PRIORITY_WORDS),
    "--type": words, "--user": words, "--after": words, "--base": words,
    "--timeout": st.floats(0.001, 1e9).map(repr) | st.sampled_from(["1", " 2 ", "1_5", "1e3"]),
    "--max-retries": st.integers(0, 10**6).map(str) | st.sampled_from(["+3", " 4", "٣"]),
    "--metadata": st.sampled_from(['{"a": 1}', "{}", '{"x": [1, null, "é"]}', '{"n": NaN}']),
}


@st.composite
def plain_command_lines(draw: st.DrawFn) -> list[str]:
    """A project, task words and options, in any order, every value acceptable."""
    argv = [draw(words)]
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["word", "valued", "flag"]))
        if kind == "word":
            argv.append(draw(words))
        elif kind == "flag":
            argv.append(draw(st.sampled_from([*submit.FLAGS])))
        else:
            option = draw(st.sampled_from([*submit.VALUED]))
            value = draw(VALUES[option])
            argv += [f"{option}={value}"] if draw(st.booleans()) else [option, value]
    if any(word.startswith("--base") for word in argv):     # argparse: not allowed together
        argv = [word for word in argv if word != "--with-local-changes"]
    return argv


@given(argv=plain_command_lines())
@settings(max_examples=examples(2000))
def test_a_plain_command_line_is_read_quickly_as_argparse_reads_it(argv):
    quick = submit._quick(argv)
    assert quick is not None
    theirs = argparse_reads(argv)
    assert theirs is not None and same(quick, theirs)


ODD = st.sampled_from(["-", "--", "-h", "--help", "-nn", "-n=1", "--json=1", "--prio", "--bogus",
                       "-1", "-x y", "--timeout", "--timeout=0", "--timeout=nan", "--type=-x",
                       "--max-retries=-1", "--max-retries=two", "--metadata=[1]",
                       "--metadata={bad", "--priority=urgent", "--base", "--with-local-changes",
                       "--after", "=", "--=x", "-n", "--dry-run", ""])


@given(argv=plain_command_lines(), odd=st.lists(ODD | st.text(max_size=6), min_size=1, max_size=3),
       at=st.integers(0, 10))
@settings(max_examples=examples(3000))
def test_any_other_command_line_is_read_as_argparse_reads_it_or_left_to_it(argv, odd, at):
    argv[at:at] = odd
    quick = submit._quick(argv)
    if quick is not None:
        theirs = argparse_reads(argv)
        assert theirs is not None and same(quick, theirs)


@pytest.mark.parametrize("argv", [
    ["demo", "x", "--help"], ["demo", "x", "--type", "-x"], ["demo", "x", "--timeout", "0"],
    ["demo", "x", "--base", "main", "--with-local-changes"], ["demo", "x", "-1"],
    ["demo", "x", "--priority=urgent"], ["demo", "x", "--after"], ["demo", "x", "--json=yes"],
])
def test_what_is_not_plainly_valid_is_left_to_argparse(argv):
    assert submit._quick(argv) is None
