"""A stand-in for `claude -p TASK --output-format stream-json --verbose`: prints Claude Code's
stream-json (the system init with a session id and model, assistant text and a tool call, a
tool result, a line that is not JSON, the result object), driven by words in its task:

    cost=0.25   the result's total_cost_usd
    limit=5     a usage limit: the result is the error "Claude AI usage limit reached|<epoch
                5 s ahead>" and the exit code 1 (a resumed run never hits it)
    sleep=2     seconds of work before the result
    write=a.txt a file it writes in its working directory (its work, for a workspace)

`--resume ID -p TEXT` resumes the session ID: it says so, names the files it finds, writes
resumed.txt and completes.
"""

from __future__ import annotations

import json
import os
import sys
import time


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def main() -> int:
    args = sys.argv[1:]
    resume = args[args.index("--resume") + 1] if "--resume" in args else ""
    task = args[args.index("-p") + 1] if "-p" in args else ""
    opts = dict(word.split("=", 1) for word in task.split() if "=" in word)
    session = resume or f"sess-{os.environ.get('LUZIA_JOB_ID', 'none')}"
    account = os.environ.get("FAKE_ACCOUNT", "-")
    emit({"type": "system", "subtype": "init", "session_id": session, "model": "claude-fake-1",
          "cwd": os.getcwd(), "tools": ["Bash", "Read"]})
    said = f"resumed session {session}" if resume else f"working on {task} as {account}"
    if resume:
        said += f" with {', '.join(sorted(n for n in os.listdir('.') if not n.startswith('.')))}"
        with open("resumed.txt", "w") as f:
            f.write("went on\n")
    if "write" in opts:
        with open(opts["write"], "w") as f:
            f.write(f"{task}\n")
    emit({"type": "assistant", "session_id": session, "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-fake-1",
        "content": [{"type": "text", "text": said}],
        "usage": {"input_tokens": 60, "output_tokens": 20}}})
    print("this line is not json {", flush=True)
    emit({"type": "assistant", "session_id": session, "message": {
        "id": "msg_2", "type": "message", "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                     "input": {"command": "ls -la"}}]}})
    emit({"type": "user", "session_id": session, "message": {
        "role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                     "content": "total 2\nREADME.md"}]}})
    time.sleep(float(opts.get("sleep", 0)))     # the pretend work of the pretend agent
    if "limit" in opts and not resume:
        reset = int(time.time() + float(opts["limit"]))
        emit({"type": "result", "subtype": "success", "is_error": True, "duration_ms": 120,
              "num_turns": 1, "session_id": session, "total_cost_usd": 0.01,
              "result": f"Claude AI usage limit reached|{reset}",
              "usage": {"input_tokens": 60, "output_tokens": 0}})
        return 1
    emit({"type": "result", "subtype": "success", "is_error": False, "duration_ms": 1500,
          "num_turns": 2, "session_id": session, "result": "done: " + said,
          "total_cost_usd": float(opts.get("cost", 0.05)),
          "usage": {"input_tokens": 100, "output_tokens": 40, "cache_read_input_tokens": 1000,
                    "cache_creation_input_tokens": 200},
          "modelUsage": {"claude-fake-1": {"inputTokens": 100}}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
