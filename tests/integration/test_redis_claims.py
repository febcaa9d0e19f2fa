"""Test fleets claim Redis database numbers (tests/fleet.py): a number whose owner died without its
teardown (a killed test run) is taken back, emptied; a live owner's, or another host's, never is."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
import redis

from tests.fleet import OWNER_KEY, claim_redis_db


@pytest.fixture
def claimed(redis_available: str) -> Iterator[tuple[str, int]]:
    """A database number claimed for this test the ordinary way, emptied afterwards."""
    url = claim_redis_db(redis_available)
    yield redis_available, int(url.rsplit("/", 1)[1])
    redis.Redis.from_url(url).flushdb()


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_dead_owners_database_is_emptied_and_taken(claimed: tuple[str, int]) -> None:
    url, n = claimed
    client = redis.Redis.from_url(f"{url}/{n}")
    client.set(OWNER_KEY, f"{socket.gethostname()}:{dead_pid()}")
    client.set("celery-task-meta-leftover", "x")  # what the killed run's fleet left

    assert claim_redis_db(url, [n]) == f"{url}/{n}"
    assert client.keys() == [OWNER_KEY.encode()], "the leftovers went with the dead owner"
    assert client.get(OWNER_KEY) == f"{socket.gethostname()}:{os.getpid()}".encode()


@pytest.mark.parametrize(
    "owner",
    [f"{socket.gethostname()}:{os.getppid()}", "another-host:1", "12345"],
    ids=["live owner", "another host", "mark without a host"],
)
def test_a_database_whose_owner_may_live_is_left_alone(claimed: tuple[str, int], owner: str) -> None:
    url, n = claimed
    client = redis.Redis.from_url(f"{url}/{n}")
    client.set(OWNER_KEY, owner)
    client.set("in-use", "x")

    with pytest.raises(RuntimeError, match="no empty Redis database left"):
        claim_redis_db(url, [n])
    assert client.get(OWNER_KEY) == owner.encode() and client.get("in-use") == b"x"
