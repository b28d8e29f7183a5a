"""Task-type detection from the task text (seed 003's keyword routing)."""

from __future__ import annotations

from luzia.broker.routing import detect_type
from luzia.config import TYPE_RULES_DEFAULT

RULES = {"code": ["fix", "bug"], "reasoning": ["why", "plan"], "text": ["write", "summar"]}


def test_first_rule_in_order_wins():
    assert detect_type("write a plan to fix the bug", RULES, "text") == "code"
    assert detect_type("plan what to write", RULES, "code") == "reasoning"


def test_case_insensitive_and_substring():
    assert detect_type("SUMMARIZE the thread", RULES, "code") == "text"
    assert detect_type("Why is it slow?", RULES, "code") == "reasoning"


def test_default_when_nothing_matches():
    assert detect_type("hello there", RULES, "text") == "text"
    assert detect_type("", RULES, "code") == "code"
    assert detect_type("anything", {}, "reasoning") == "reasoning"


def test_empty_keywords_are_ignored():
    assert detect_type("x", {"code": [""], "text": ["x"]}, "code") == "text"


def test_default_rules():
    assert detect_type("fix the login button in overbits", TYPE_RULES_DEFAULT, "code") == "code"
    assert detect_type("analyse the results", TYPE_RULES_DEFAULT, "code") == "reasoning"
    assert detect_type("translate this email", TYPE_RULES_DEFAULT, "code") == "text"
