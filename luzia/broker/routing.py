"""Task-type routing (seed 003): detect a job's type from its text by keyword rules."""

from __future__ import annotations


def detect_type(text: str, rules: dict[str, list[str]], default: str) -> str:
    """The first type (in the rules' order) one of whose keywords occurs in `text`."""
    low = text.lower()
    for kind, keywords in rules.items():
        if any(word.lower() in low for word in keywords if word):
            return kind
    return default
