"""Names of git things that several processes check the same way: is a `repo` a URL or a
local path, is a base a name git can resolve (and never an option), is a string a commit id.
Imports nothing of ours: the CLI's submit path and the job's wrapper use it."""

from __future__ import annotations

import re

# scheme://..., or scp-like user@host:path (what `git clone` takes); anything else is a path
URL_RE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|[^/:@\s]+@[^/:\s]+:)")
# a branch, tag or commit name, with git's revision suffixes (main~2, v1.0^{commit});
# never starting with "-" (it would read as an option)
REF_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/@{}^~+-]{0,255}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")     # sha-1 or sha-256


def is_url(repo: str) -> bool:
    return bool(URL_RE.match(repo))


def valid(ref: str) -> bool:
    """A name `git rev-parse` may be asked to resolve; ".." and "@{-1}"-style tricks out."""
    return bool(REF_RE.match(ref)) and ".." not in ref and "//" not in ref \
        and not ref.endswith((".lock", "/", "."))


def short(commit: str) -> str:
    return commit[:10]
