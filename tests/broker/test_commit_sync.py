"""A broker turn that acts on nothing commits without an fsync; the next one that acts
syncs first (DECISIONS: the commit of a turn that acts on nothing)."""

from __future__ import annotations

import sqlite3

from luzia.broker.store import Store


def drained_seen_by_another_connection(path: str) -> str | None:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT value FROM meta WHERE key='drained'").fetchone()
        return row[0] if row else None
    finally:
        db.close()


def test_an_unsynced_commit_is_written_and_the_next_synced_commit_syncs_it(short_tmp):
    path = str(short_tmp / "luzia.db")
    store = Store(path)
    try:
        store.set_drained({"gpu1"})
        assert store.commit(sync=False)
        # written: another process (a restarted broker after kill -9) reads it
        assert drained_seen_by_another_connection(path) == '["gpu1"]'
        assert store._unsynced
        # a turn that acts but wrote nothing itself still syncs what came before
        assert not store.commit()
        assert not store._unsynced
        store.set_drained({"gpu2"})
        assert store.commit()
        assert not store._unsynced
        assert drained_seen_by_another_connection(path) == '["gpu2"]'
    finally:
        store.close()


def test_a_turn_with_nothing_to_send_commits_unsynced_and_one_that_sends_syncs(broker):
    broker.model.store.set_drained({"gpu1"})
    broker.flush()                     # nothing to send, reply, unspool or publish
    assert broker.model.store._unsynced
    broker.model.out.unspool.append("nothing-here")
    broker.flush()                     # it acts (a spool file goes): on disk first
    assert not broker.model.store._unsynced
