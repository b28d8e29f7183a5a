"""luzia-supervisor: keeps this host's broker and agent running (see arbiter.py; the control
operations are documented in control.py, the process states in states.py)."""
