"""Output adapters: Claude Code's json and stream-json, Codex's exec --json, none; and the
wrapper's tee (raw stream kept, readable lines in output.log, usage.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from luzia import layout
from luzia.agents.adapters import make
from luzia.agents.adapters.stream import Tee
from luzia.agents.wrap import write_atomic

FAKE = str(Path(__file__).resolve().parent / "fake_claude.py")
RESULT = {"type": "result", "subtype": "success", "is_error": False, "duration_ms": 45000,
          "num_turns": 5, "result": "All done.\nTwo lines.", "session_id": "abc-123",
          "total_cost_usd": 0.352, "usage": {"input_tokens": 51, "output_tokens": 5555,
                                             "cache_read_input_tokens": 147615,
                                             "cache_creation_input_tokens": 12190}}


def feed(fmt: str, lines: list[str]):
    adapter = make(fmt)
    shown = [out for line in lines for out in adapter.feed(line)]
    return adapter, shown


def test_claude_json_is_one_result_object():
    adapter, shown = feed("claude", [json.dumps(RESULT)])
    state = adapter.state()
    assert (state["cost_usd"], state["tokens_in"], state["tokens_out"]) == (0.352, 51, 5555)
    assert (state["cache_read"], state["cache_write"], state["turns"]) == (147615, 12190, 5)
    assert state["session_id"] == "abc-123" and state["result"] and not state["error"]
    assert shown[:2] == ["All done.", "Two lines."] and "5 turns, $0.3520" in shown[2]


def test_claude_stream_json_with_a_malformed_line_and_a_limit():
    out = subprocess.run([sys.executable, FAKE, "-p", "limit=5"], capture_output=True,
                         text=True, env={"LUZIA_JOB_ID": "j1", "FAKE_ACCOUNT": "team-a"})
    adapter, shown = feed("claude", out.stdout.splitlines() + ["", "{not json", "[1, 2]"])
    assert out.returncode == 1
    assert adapter.session_id == "sess-j1" and adapter.model == "claude-fake-1"
    assert adapter.malformed == 3                  # the fake's own bad line, and two more
    assert adapter.error.startswith("Claude AI usage limit reached|")
    assert "working on limit=5 as team-a" in shown and "→ Bash: ls -la" in shown
    assert "this line is not json {" in shown      # kept for the person reading the log
    assert not any(line.startswith("{") and "type" in line for line in shown)


def test_claude_tokens_are_estimated_from_messages_until_the_result():
    adapter, _ = feed("claude", [json.dumps({"type": "assistant", "message": {
        "id": "m1", "model": "claude-x", "content": [], "usage": {"input_tokens": 7,
                                                                  "output_tokens": 3}}})] * 2)
    assert (adapter.tokens_in, adapter.tokens_out, adapter.turns) == (7, 3, 1)  # same id once
    assert adapter.cost_usd == -1 and adapter.model == "claude-x"


def test_codex_exec_json():
    events = [{"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
              {"type": "turn.started"},
              {"type": "item.completed", "item": {"id": "item_1", "type": "agent_message",
                                                  "text": "Looking at the repo."}},
              {"type": "item.completed", "item": {"id": "item_2", "type": "command_execution",
                                                  "command": "bash -lc ls", "exit_code": 0,
                                                  "status": "completed"}},
              {"type": "turn.completed", "usage": {"input_tokens": 24763,
                                                   "cached_input_tokens": 24448,
                                                   "output_tokens": 122}},
              {"type": "turn.failed", "error": {"message": "You've hit your usage limit."}}]
    adapter, shown = feed("codex", [json.dumps(e) for e in events] + ["garbage"])
    assert adapter.session_id == "0199a213-81c0-7800-8aa1-bbab2a035a53"
    assert (adapter.tokens_in, adapter.cache_read, adapter.tokens_out) == (315, 24448, 122)
    assert adapter.cost_usd == -1 and adapter.turns == 2 and adapter.malformed == 1
    assert adapter.error == "You've hit your usage limit."
    assert "Looking at the repo." in shown and "→ $ bash -lc ls (exit 0)" in shown


def test_none_reads_nothing():
    adapter, shown = feed("none", ['{"type": "result", "total_cost_usd": 1}'])
    assert shown == ['{"type": "result", "total_cost_usd": 1}'] and adapter.cost_usd == -1


def test_the_tee_keeps_the_raw_stream_and_writes_usage(tmp_path):
    with open(tmp_path / layout.OUTPUT, "ab", buffering=0) as log:
        tee = Tee(tmp_path, "claude", log, False, write_atomic)
        data = json.dumps(RESULT).encode() + b"\n"
        tee.write(b'{"type":"system","subtype":"init","session_id":"abc-123","model":"m"}\n')
        tee.write(data[:10])           # a line cut in two by the pipe
        tee.write(data[10:])
        tee.close()
    assert (tmp_path / layout.RAW_OUTPUT).read_bytes().endswith(data)
    usage = json.loads((tmp_path / layout.USAGE).read_text())
    assert usage["cost_usd"] == 0.352 and usage["session_id"] == "abc-123"
    assert usage["format"] == "claude" and usage["malformed"] == 0
    text = (tmp_path / layout.OUTPUT).read_text()
    assert "[claude session abc-123, model m]" in text and "All done." in text
