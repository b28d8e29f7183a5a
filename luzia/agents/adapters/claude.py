"""Claude Code's `--output-format json` and `stream-json` (`claude -p`).

stream-json is one JSON object a line: `system` (subtype `init`: session_id, model, tools),
`assistant` and `user` messages (content blocks: text, thinking, tool_use, tool_result),
and a last `result` object; `json` prints that result object alone. The result carries
`session_id`, `total_cost_usd` (older releases: `cost_usd`), `usage` (input_tokens,
output_tokens, cache_read_input_tokens, cache_creation_input_tokens), `num_turns`,
`duration_ms`, `is_error`, `subtype` and the `result` text — on a usage limit that text is
the limit's message ("Claude AI usage limit reached|1749924000").
"""

from __future__ import annotations

from typing import Any

from luzia.agents.adapters import Adapter, count, number, short

SHOWN_INPUT = ("command", "file_path", "path", "pattern", "url", "query", "description",
               "prompt")


class ClaudeAdapter(Adapter):
    format = "claude"

    def __init__(self) -> None:
        super().__init__()
        self._messages: dict[str, dict[str, int]] = {}   # message id -> its usage (estimate)

    def feed(self, line: str) -> list[str]:
        obj = self.parse(line)
        if obj is None:
            return [line] if line.strip() else []
        kind = obj.get("type")
        if isinstance(obj.get("session_id"), str) and obj["session_id"]:
            self.session_id = obj["session_id"][:128]
        if kind == "system":
            return self._system(obj)
        if kind in ("assistant", "user"):
            message = obj.get("message")
            return self._message(kind, message) if isinstance(message, dict) else []
        if kind == "result":
            return self._result(obj)
        return []             # stream events and kinds of later releases: raw stream only

    def _system(self, obj: dict[str, Any]) -> list[str]:
        if obj.get("subtype") != "init":
            return []
        if isinstance(obj.get("model"), str):
            self.model = obj["model"][:128]
        return [f"[claude session {self.session_id or '?'}, model {self.model or '?'}]"]

    def _message(self, kind: str, message: dict[str, Any]) -> list[str]:
        if kind == "assistant":
            self._estimate(message)
        content = message.get("content")
        if isinstance(content, str):
            return content.splitlines() if kind == "assistant" else []
        out: list[str] = []
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict):
                out += _block(block)
        return out

    def _estimate(self, message: dict[str, Any]) -> None:
        """Tokens summed over the assistant's messages: what a run killed before its result
        used (the result's own totals replace these)."""
        if isinstance(message.get("model"), str) and not self.model:
            self.model = message["model"][:128]
        usage = message.get("usage")
        if self.result or not isinstance(usage, dict):
            return
        self._messages[str(message.get("id", len(self._messages)))] = {
            "tokens_in": count(usage.get("input_tokens")),
            "tokens_out": count(usage.get("output_tokens")),
            "cache_read": count(usage.get("cache_read_input_tokens")),
            "cache_write": count(usage.get("cache_creation_input_tokens"))}
        for name in ("tokens_in", "tokens_out", "cache_read", "cache_write"):
            setattr(self, name, sum(m[name] for m in self._messages.values()))
        self.turns = len(self._messages)

    def _result(self, obj: dict[str, Any]) -> list[str]:
        self.result = True
        cost = number(obj.get("total_cost_usd"))
        if cost is None:
            cost = number(obj.get("cost_usd"))
        if cost is not None and cost >= 0:
            self.cost_usd = cost
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.tokens_in = count(usage.get("input_tokens"))
            self.tokens_out = count(usage.get("output_tokens"))
            self.cache_read = count(usage.get("cache_read_input_tokens"))
            self.cache_write = count(usage.get("cache_creation_input_tokens"))
        if number(obj.get("num_turns")) is not None:
            self.turns = count(obj.get("num_turns"))
        models = obj.get("modelUsage")
        if isinstance(models, dict) and models and not self.model:
            self.model = str(next(iter(models)))[:128]
        text = obj["result"] if isinstance(obj.get("result"), str) else ""
        if obj.get("is_error") is True or str(obj.get("subtype", "")).startswith("error"):
            self.error = short(text or str(obj.get("subtype", "error")), 2000)
        seconds = (number(obj.get("duration_ms")) or 0) / 1000
        cost_text = f"${self.cost_usd:.4f}" if self.cost_usd >= 0 else "no cost"
        summary = (f"[claude {obj.get('subtype', 'result')}{' (error)' if self.error else ''}: "
                   f"{self.turns} turns, {cost_text}, {seconds:.1f}s]")
        return [*text.splitlines(), summary]


def _block(block: dict[str, Any]) -> list[str]:
    """A content block as output.log lines: text as it is, a tool call on one line."""
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return block["text"].splitlines()
    if kind == "tool_use":
        return [f"→ {block.get('name', 'tool')}: {_input(block.get('input'))}"]
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            content = " ".join(c.get("text", "") for c in content if isinstance(c, dict))
        mark = "✗" if block.get("is_error") else "←"
        return [f"  {mark} {short(str(content or ''), 200)}"]
    return []


def _input(value: Any) -> str:
    """A tool call's input, as a person would want it named: its command, file, pattern."""
    if isinstance(value, dict):
        for key in SHOWN_INPUT:
            if isinstance(value.get(key), str):
                return short(value[key])
        return short(", ".join(f"{k}={v}" for k, v in value.items()))
    return short(str(value or ""))
