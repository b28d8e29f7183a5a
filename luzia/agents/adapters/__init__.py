"""Output adapters: what an agent command's output says about its attempt (docs/AGENTS.md).

An agent command may declare the format of its output (`format = "claude"` in
`[agent.commands]`). The job's wrapper then runs the command's output through the format's
adapter, line by line as it comes (stream.py): the raw stream is kept in output.jsonl, a
readable version (the assistant's text, its tool calls) goes to output.log and the tmux
pane, and what the adapter learns — cost, tokens, turns, model, the conversation's session
id, an error the agent reported — is written to usage.json, which the agent reads for its
Progress and Done.

Parsing is tolerant: a line that is not the format's JSON is kept as text, counted in
`malformed`, and never ends the job. Imports only the standard library's json: the wrapper
starts once per job.
"""

from __future__ import annotations

import json
from typing import Any

TEXT_MAX = 400            # characters of a tool call's argument shown in output.log
USAGE_FIELDS = ("cost_usd", "tokens_in", "tokens_out", "cache_read", "cache_write", "turns",
                "model", "session_id", "malformed")


class Adapter:
    """The format `none`: every line is text, nothing is learnt."""

    format = "none"

    def __init__(self) -> None:
        self.cost_usd = -1.0          # -1: no cost reported
        self.tokens_in = self.tokens_out = self.cache_read = self.cache_write = 0
        self.turns = self.malformed = 0
        self.model = self.session_id = ""
        self.error = ""               # the failure the agent itself reported (its last words)
        self.result = False           # the agent's final record was seen

    def feed(self, line: str) -> list[str]:
        """One line of the command's output; the lines output.log shows for it."""
        return [line]

    def state(self) -> dict[str, Any]:
        """What usage.json holds."""
        out: dict[str, Any] = {name: getattr(self, name) for name in USAGE_FIELDS}
        out.update(format=self.format, error=self.error, result=self.result)
        return out

    # helpers for the JSON formats ------------------------------------------------------
    def parse(self, line: str) -> dict[str, Any] | None:
        """The line's JSON object; None (counted) for anything else but a blank line."""
        text = line.strip()
        if not text:
            return None
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self.malformed += 1
            return None
        return obj


def make(fmt: str) -> Adapter:
    """The adapter of `fmt` (agentconf.ADAPTER_FORMATS); an unknown one reads as `none`."""
    if fmt == "claude":
        from luzia.agents.adapters.claude import ClaudeAdapter
        return ClaudeAdapter()
    if fmt == "codex":
        from luzia.agents.adapters.codex import CodexAdapter
        return CodexAdapter()
    return Adapter()


def number(value: Any) -> float | None:
    """A JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def count(value: Any) -> int:
    """A JSON token count: a non-negative whole number, else 0."""
    n = number(value)
    return int(n) if n is not None and n >= 0 else 0


def short(text: str, width: int = TEXT_MAX) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"
