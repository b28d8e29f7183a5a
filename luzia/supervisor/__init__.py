"""luzia-supervisor: keeps this host's broker and agent running."""
