"""Codex's `codex exec --json`: one JSON event a line.

`thread.started` (thread_id: the session to resume with `codex exec resume <id>`),
`turn.started`, `turn.completed` (usage: input_tokens, cached_input_tokens, output_tokens),
`turn.failed` (error.message), `item.started|updated|completed` (item.type agent_message,
reasoning, command_execution, file_change, mcp_tool_call, web_search, todo_list, error) and
`error` (message). Codex reports no cost; its input_tokens include the cached ones, which
are counted here as cache reads only (tokens_in is the new input, as for Claude).
"""

from __future__ import annotations

from typing import Any

from luzia.agents.adapters import Adapter, count, short


class CodexAdapter(Adapter):
    format = "codex"

    def feed(self, line: str) -> list[str]:
        obj = self.parse(line)
        if obj is None:
            return [line] if line.strip() else []
        kind = obj.get("type")
        if kind == "thread.started" and isinstance(obj.get("thread_id"), str):
            self.session_id = obj["thread_id"][:128]
            return [f"[codex thread {self.session_id}]"]
        if kind in ("turn.completed", "turn.failed"):
            return self._turn(obj)
        if kind == "error":
            self.error = short(str(obj.get("message", "error")), 2000)
            return [f"! {self.error}"]
        if kind == "item.completed" and isinstance(obj.get("item"), dict):
            return _item(obj["item"])
        return []

    def _turn(self, obj: dict[str, Any]) -> list[str]:
        self.turns += 1
        self.result = True
        usage = obj.get("usage")
        if isinstance(usage, dict):
            cached = count(usage.get("cached_input_tokens"))
            self.tokens_in += max(0, count(usage.get("input_tokens")) - cached)
            self.cache_read += cached
            self.tokens_out += count(usage.get("output_tokens"))
        if obj["type"] == "turn.failed":
            error = obj.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self.error = short(str(message or "turn failed"), 2000)
            return [f"! {self.error}"]
        return [f"[codex turn {self.turns}: {self.tokens_in + self.cache_read} in, "
                f"{self.tokens_out} out]"]


def _item(item: dict[str, Any]) -> list[str]:
    kind = item.get("type")
    if kind == "agent_message" and isinstance(item.get("text"), str):
        return item["text"].splitlines()
    if kind == "command_execution":
        code = item.get("exit_code")
        return [f"→ $ {short(str(item.get('command', '')))}"
                + (f" (exit {code})" if code is not None else "")]
    if kind == "file_change":
        changes = item.get("changes")
        changes = changes if isinstance(changes, list) else []
        paths = [f"{c.get('kind', 'edit')} {c.get('path', '?')}" for c in changes
                 if isinstance(c, dict)]
        return [f"→ {short(', '.join(paths) or 'file change')}"]
    if kind == "mcp_tool_call":
        return [f"→ {item.get('server', 'mcp')}.{item.get('tool', 'tool')}"]
    if kind == "web_search":
        return [f"→ search: {short(str(item.get('query', '')))}"]
    if kind == "error":
        return [f"! {short(str(item.get('message', 'error')))}"]
    return []
