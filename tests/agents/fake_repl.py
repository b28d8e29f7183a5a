"""A small REPL standing in for a coding agent's TUI in the interactive runner's tests.

Prints the prompt `> `, reads a line, answers, prints the prompt again. Commands:
`sleep S` works S seconds (printing a line first), `quiet` prints a line and never shows the
prompt again (until Ctrl-C), `exit N` ends with status N, `pwd` prints the work directory,
`touch NAME` writes a file there, `ask` asks `Proceed? (y/n)` and waits for the answer
(the attention tests); anything else is echoed as `you said: ...`.
"""

import os
import sys
import time


def prompt() -> None:
    sys.stdout.write("> ")
    sys.stdout.flush()


def main() -> int:
    print(f"fake repl {os.getpid()} ready", flush=True)
    prompt()
    while True:
        try:
            line = sys.stdin.readline()
            if not line:
                return 0
            answer(line)
        except KeyboardInterrupt:   # Ctrl-C ends the current command, as in a real REPL
            print("^C interrupted", flush=True)
        except SystemExit as stop:
            return int(stop.code or 0)
        prompt()


def answer(line: str) -> None:
    words = line.split() or [""]
    if words[0] == "sleep":
        print("working...", flush=True)
        time.sleep(float(words[1]))
        print("slept", flush=True)
    elif words[0] == "quiet":
        print("going quiet", flush=True)
        while True:
            time.sleep(3600)
    elif words[0] == "exit":
        raise SystemExit(int(words[1]) if len(words) > 1 else 0)
    elif words[0] == "ask":
        print("about to delete 3 files", flush=True)
        print(f"you chose {input('Proceed? (y/n) ').strip() or 'the default'}", flush=True)
    elif words[0] == "pwd":
        print(os.getcwd(), flush=True)
    elif words[0] == "touch":
        with open(words[1], "w") as f:
            f.write("made in the REPL\n")
        print(f"touched {words[1]}", flush=True)
    else:
        print(f"you said: {line.strip()}", flush=True)

if __name__ == "__main__":
    sys.exit(main())
