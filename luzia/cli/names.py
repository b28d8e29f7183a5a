"""The command names, known without importing click (the submit fast path checks them)."""

COMMANDS = frozenset({"jobs", "logs", "cancel", "attach", "config", "supervisor",
                      "diff", "revert", "keys", "queue", "agents", "history", "stats", "top",
                      "import", "retry", "notify"})
