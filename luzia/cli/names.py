"""The commands by noun, known without importing click: the submit fast path (main.py)
tells a command from a project by these names, and each noun is a module of its own,
luzia/cli/<noun>.py, named like the broker's ops for it (jobs.*, queue.*, agents.*, …).
root.py registers every noun module's COMMANDS; a test holds the two lists together."""

COMMANDS_BY_NOUN = {
    "jobs": ("jobs", "cancel", "retry", "attach"),
    "logs": ("logs",),
    "queue": ("queue",),
    "agents": ("agents",),
    "history": ("history", "stats"),
    "top": ("top",),
    "imports": ("import",),
    "git": ("diff", "revert"),
    "workspace": ("workspace", "merge", "discard", "pr"),
    "config": ("config",),
    "keys": ("keys",),
    "supervisor": ("supervisor",),
    "db": ("db",),
    "web": ("web",),
    "budget": ("budget",),
    "notify": ("notify",),
    "reply": ("reply",),
}
COMMANDS = frozenset(name for names in COMMANDS_BY_NOUN.values() for name in names)
