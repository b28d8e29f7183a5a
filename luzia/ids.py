"""Job ids: made by the client, time-ordered to the second, unique across hosts and processes.

Form: ``HHMMSS-xxxxxxxxxxxx`` (local wall-clock time, then 48 random bits as 12 hex digits),
e.g. ``113754-a2f5c10e9b3d``. Ordering between jobs uses the broker's sequence number, not the id.
"""

from __future__ import annotations

import os
import re
import time

# \Z, not $: `$` also matches before a final newline, and "113754-a2f5c10e9b3d\n" is no id.
# Use them with fullmatch (protocol.py gives JOB_ID_RE's pattern to msgspec, which searches)
JOB_ID_RE = re.compile(r"^[0-9]{6}-[0-9a-f]{12}\Z")
# what a user may type to name a job: a unique prefix of at least 6 characters
JOB_PREFIX_RE = re.compile(r"^[0-9]{6}(-[0-9a-f]{0,12})?\Z")


def new_job_id(now: float | None = None) -> str:
    stamp = time.strftime("%H%M%S", time.localtime(now))
    return f"{stamp}-{os.urandom(6).hex()}"
