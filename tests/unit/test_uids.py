"""Uid leases: one uid per live sandbox, exact across processes, freed at removal or reclaimed."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from sandbox_engine.uids import Lease, RangeExhausted, UidLeases


def leases(tmp_path, first: int = 200000, count: int = 16) -> UidLeases:
    return UidLeases(str(tmp_path / "uids"), range(first, first + count))


def bound(uids: UidLeases, instance: str, holder: str) -> int:
    with uids.take(instance) as taking:
        taking.bind(holder)
    return taking.uid


def test_a_bound_lease_names_its_instance_and_sandbox(tmp_path):
    uids = leases(tmp_path)
    uid = bound(uids, "blue", "c1")
    assert uid in uids.uids
    assert uids.read(uid) == Lease(uid, "blue", "c1")
    assert uids.leases("blue") == [Lease(uid, "blue", "c1")]
    assert uids.leases("green") == []


def test_live_leases_never_share_a_uid_and_a_full_range_refuses(tmp_path):
    uids = leases(tmp_path, count=4)
    taken = {bound(uids, "blue", f"c{i}") for i in range(4)}
    assert taken == set(uids.uids)
    with pytest.raises(RangeExhausted, match="200000-200003"):
        with uids.take("blue"):
            pass


def test_a_uid_not_bound_is_given_back_also_when_creation_fails(tmp_path):
    uids = leases(tmp_path, count=1)
    with uids.take("blue") as taking:
        assert uids.read(taking.uid) == Lease(taking.uid, "blue", "")
    assert uids.leases() == []
    with pytest.raises(RuntimeError):
        with uids.take("blue"):
            raise RuntimeError("the runtime refused")
    assert uids.leases() == []


def test_release_frees_only_the_lease_of_that_sandbox(tmp_path):
    uids = leases(tmp_path)
    uid = bound(uids, "blue", "c1")
    uids.release(uid, "someone-else")
    assert uids.read(uid) is not None
    uids.release(uid, "c1")
    assert uids.read(uid) is None
    uids.release(uid, "c1")  # twice is fine


def _take_many(directory: str, first: int, count: int, n: int, start, out) -> None:
    uids = UidLeases(directory, range(first, first + count))
    start.wait(10)
    got = []
    for i in range(n):
        with uids.take(f"i{os.getpid()}") as taking:
            taking.bind(f"{os.getpid()}-{i}")
        got.append(taking.uid)
    out.put(got)


def test_takers_in_many_processes_get_distinct_uids(tmp_path):
    """Workers and engines of other instances take from one directory at the same moment."""
    context = multiprocessing.get_context("fork")
    start, out = context.Event(), context.Queue()
    directory = str(tmp_path / "uids")
    procs = [
        context.Process(target=_take_many, args=(directory, 300000, 40, 10, start, out)) for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    start.set()
    got = [uid for _ in procs for uid in out.get(timeout=30)]
    for proc in procs:
        proc.join(10)
    assert sorted(got) == list(range(300000, 300040))


def test_reclaim_frees_leases_of_sandboxes_gone_from_a_later_listing(tmp_path):
    uids = leases(tmp_path)
    gone = bound(uids, "blue", "gone")
    kept = bound(uids, "blue", "here")
    other = bound(uids, "green", "gone-too")
    listed_at = time.time() + 2  # the listing began after every lease was bound
    assert uids.reclaim("blue", {"here"}, listed_at) == [gone]
    assert {lease.uid for lease in uids.leases()} == {kept, other}


def test_reclaim_leaves_a_lease_bound_after_the_listing_began(tmp_path):
    uids = leases(tmp_path)
    listed_at = time.time() - 5
    uid = bound(uids, "blue", "too-new-to-be-listed")
    assert uids.reclaim("blue", set(), listed_at) == []
    assert uids.read(uid) is not None


def test_reclaim_leaves_a_lease_whose_sandbox_is_being_created(tmp_path):
    uids = leases(tmp_path)
    with uids.take("blue") as taking:
        assert uids.reclaim("blue", set(), time.time() + 60) == []
        taking.bind("c1")
    assert uids.read(taking.uid) == Lease(taking.uid, "blue", "c1")


def test_reclaim_frees_a_lease_whose_taker_died_before_binding_it(tmp_path):
    uids = leases(tmp_path)
    # What a taker killed between taking and binding leaves: content, and no lock.
    path = os.path.join(uids.directory, "200005")
    with open(path, "w") as f:
        json.dump({"uid": 200005, "instance": "blue", "holder": ""}, f)
    assert uids.reclaim("blue", set(), time.time()) == [200005]
    assert not os.path.exists(path)


def test_a_release_after_a_reclaim_leaves_the_uids_next_lease_alone(tmp_path):
    uids = leases(tmp_path, count=1)
    uid = bound(uids, "blue", "old")
    uids.reclaim("blue", set(), time.time() + 2)
    assert bound(uids, "blue", "new") == uid
    uids.release(uid, "old")  # the old sandbox's remover, late
    assert uids.read(uid) == Lease(uid, "blue", "new")
