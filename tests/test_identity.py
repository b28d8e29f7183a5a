"""luzia/identity.py and the broker's reading of who sent a message (luzia/broker/peers.py):
the rule of whom one may submit as, and the names the broker takes from a connection."""

from __future__ import annotations

import os

import pytest

from luzia.broker.peers import _peer_uid
from luzia.identity import NOT_ALLOWED, admins, key_user, operator, refusal, unix_user


@pytest.mark.parametrize("submitter, user, owner, admin, allowed", [
    ("alice", "dana", "dana", False, True),      # the project's owner: the default
    ("alice", "alice", "dana", False, True),     # oneself
    ("alice", "bob", "dana", False, False),      # anyone else: admins only
    ("carol", "bob", "dana", True, True),
    (None, "dana", "dana", False, True),         # tcp without CURVE: the owner only
    (None, "bob", "dana", False, False),
    ("alice", "bob", None, False, False),        # a project the broker does not know
])
def test_a_job_is_its_submitters_or_its_owners_unless_an_admin_says_otherwise(
        submitter, user, owner, admin, allowed):
    why = refusal(submitter, user, owner, admin)
    assert (why == "") is allowed
    if not allowed:
        assert why.startswith(NOT_ALLOWED) and repr(user) in why and "admin" in why


def test_admins_are_the_configured_ones_the_operator_and_root():
    assert admins(["carol"], "luzia") == {"carol", "luzia", "root"}
    assert operator() == unix_user(os.geteuid())
    assert unix_user(2**31 - 7) == f"uid{2**31 - 7}"          # no passwd entry


def test_a_key_files_name_is_its_user_up_to_an_at():
    assert key_user("alice") == "alice" and key_user("alice@laptop") == "alice"
    assert key_user("surtr") == "surtr"


@pytest.mark.parametrize("address, uid", [
    ("localhost:1000:1000:4242", 1000), (":0:0:1", 0), ("x:501:20:", 501),
    ("", None), ("127.0.0.1", None), ("fe80::1", None), ("a:b:c:d", None),
])
def test_the_uid_of_an_ipc_peer_address(address, uid):
    assert _peer_uid(address) == uid
