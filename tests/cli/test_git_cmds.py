"""`luzia diff` / `luzia revert` refusals, against the CLI's fake broker: each is one line
with the reason and the way on, and changes nothing."""

from __future__ import annotations

import subprocess

from tests.cli.fakebroker import make_job

J = "120000-aaaaaaaaaaaa"


def test_a_job_on_another_host_names_the_host(home, fake):
    fake.add(make_job(J, state="completed", host="gpu7", workdir="/srv/not-on-this-host"))
    out = home.cli("diff", J)
    err = out.stderr.decode().strip()
    assert out.returncode == 1 and len(err.splitlines()) == 1
    assert "not on this host; it ran on gpu7: run `luzia diff " in err


def test_revert_refuses_a_running_job(home, fake, short_tmp):
    repo = short_tmp / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    from luzia import snapshots
    snapshots.record(str(repo), J, "before")
    fake.add(make_job(J, state="running", host="here", workdir=str(repo)))
    out = home.cli("revert", J)
    assert out.returncode == 1
    assert f"job {J} is still running; cancel it first" in out.stderr.decode()
    (repo / "new.txt").write_text("so far\n")
    assert "new.txt" in home.cli("diff", J).stdout.decode()        # the changes so far


def test_a_job_without_snapshots_says_why(home, fake, short_tmp):
    fake.add(make_job(J, state="completed", host="here", workdir=str(short_tmp)))
    out = home.cli("diff", J)
    assert out.returncode == 1 and "left no git snapshot" in out.stderr.decode()
