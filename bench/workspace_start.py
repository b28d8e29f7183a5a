"""Assign -> agent command running, with and without a workspace (issue 12): what making a
job's git worktree adds to its start, on a repository of 10,000 files.

Three projects on one fleet: `plain` (no repo: the job's own directory), `local` (a local
`repo`: the worktree is made in it) and `url` (the same repository as a file:// URL: the
agent's mirror is fetched, then the worktree made). The jobs take turns, so each kind sees
the same load. The Assign time is the broker's `assigned_at` (time.time() when it placed
the job), the start is the command's first act: `bash -c` printing the job id and
$EPOCHREALTIME to a file (as bench/start_latency.py). The command changes nothing, so each
workspace job also ends with a "no changes" end commit (not timed: after the start).
Goal (issue 12): the worktree adds under 1 s at p50.

Run: .venv/bin/python bench/workspace_start.py [jobs per kind] [files] [auto|tmux|subprocess]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import median, pct, start_one_agent, temp_dir, temp_fleet
from start_latency import STAMP, stamped

KINDS = ("plain", "local", "url")


def make_repo(path: Path, files: int) -> Path:
    """A repository of `files` small files in 100 directories, one commit, packed."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    per_dir = max(1, files // 100)
    for i in range(0, files, per_dir):
        d = path / f"d{i // per_dir:03d}"
        d.mkdir(exist_ok=True)
        for j in range(i, min(files, i + per_dir)):
            (d / f"f{j:05d}.txt").write_text(f"file {j}\n" * 20)
    env = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), *env, "commit", "-qm", "files"], check=True)
    # packed, as a cloned repository is (10,000 loose objects read cold cost seconds more)
    subprocess.run(["git", "-C", str(path), "repack", "-adq"], check=True)
    return path


def main(n: int = 20, files: int = 10_000, runner: str = "auto") -> dict[str, Any]:
    if runner == "auto":
        runner = "tmux" if shutil.which("tmux") else "subprocess"
    socket = f"lzb{uuid.uuid4().hex[:8]}" if runner == "tmux" else ""
    tmp = temp_dir("lzw")
    repo = make_repo(tmp / "repo", files)
    stamps = tmp / "starts"
    fleet = temp_fleet(
        f"[scheduler]\ncpu_ceiling = 1.0\n[agent]\nrunner = \"{runner}\"\n"
        f"tmux_socket = \"{socket or 'luzia'}\"\n"
        f"command = [\"bash\", \"-c\", '{STAMP}', \"stamp\", \"{{job_id}}\", \"{stamps}\"]\n"
        f"[projects.plain]\n[projects.local]\nrepo = \"{repo}\"\n"
        f"[projects.url]\nrepo = \"file://{repo}\"\n")
    took: dict[str, list[float]] = {kind: [] for kind in KINDS}
    try:
        start_one_agent(fleet)
        from luzia import client
        for i in range(n + 1):              # the first round warms up (and makes the mirror)
            for kind in KINDS:
                job_id = client.submit(kind, f"start {i}")
                started = stamped(stamps, job_id, timeout=120)
                while (job := fleet.job(job_id)) is None or job["state"] != "completed":
                    if job is not None and job["state"] in ("failed", "killed"):
                        raise RuntimeError(f"{kind} job {job_id} {job['state']}: {job['reason']}")
                    time.sleep(0.01)       # polling step
                if i:
                    took[kind].append(started - job["assigned_at"])
    finally:
        fleet.close()
        if socket:
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    res: dict[str, Any] = {"runner": runner, "n": n, "files": files}
    for kind in KINDS:
        res[kind] = {"p50_ms": median(took[kind]) * 1000, "p90_ms": pct(took[kind], 90) * 1000}
    for kind in ("local", "url"):
        res[f"{kind}_adds_ms"] = res[kind]["p50_ms"] - res["plain"]["p50_ms"]
    print(f"Assign -> command running ({runner} runner, repo of {files} files, {n} jobs each, "
          "taking turns):")
    for kind in KINDS:
        added = f", adds {res[kind + '_adds_ms']:.0f} ms" if kind != "plain" else ""
        print(f"  {kind:5}  p50 {res[kind]['p50_ms']:.0f} ms, p90 {res[kind]['p90_ms']:.0f} ms"
              f"{added}")
    print("  (goal: a worktree adds under 1000 ms)")
    return res


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 20, int(args[1]) if len(args) > 1 else 10_000,
         *(args[2:3] or ["auto"]))
