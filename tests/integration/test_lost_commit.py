"""Every hot-path transaction is safe to run twice: workers and schedulers run without connection
pre-pings and retry a transaction that fails on a dropped connection (`Database.through_outages`), so
a COMMIT that reached PostgreSQL but whose answer was lost is run again (or a statement committed on
its own, `Database.statement`). Here the connection "drops" right after each commit once; the retry
must apply nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pacore.campaigns.submit import submit
from pacore.core.campaign import CampaignConfig
from pacore.settings import Settings
from pacore.store import budgets
from pacore.store.database import Database, normalize_url
from pacore.store.store import Store
from scheduler.rounds import Publish, advance_round, start_runs
from worker import claims
from worker.claims import Spent
from worker.engine import GenerationResult

SETTINGS = Settings().model_copy(update={"token_block": 64, "token_grant": 128})


class LosesAnAnswer(Database):
    """A database whose next store, once armed, commits and then raises as a connection that dropped
    before COMMIT's answer came back would."""

    armed = lost = 0

    @contextmanager
    def store(self) -> Iterator[Store]:
        with super().store() as store:
            yield store
        self._maybe_lose()

    @contextmanager
    def statement(self) -> Iterator[Store]:  # one statement, committed on its own: its answer is lost
        with super().statement() as store:
            yield store
        self._maybe_lose()

    def _maybe_lose(self) -> None:
        if self.armed:
            self.armed, self.lost = self.armed - 1, self.lost + 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")


@pytest.fixture
def database(database_url: str) -> Iterator[LosesAnAnswer]:
    db = LosesAnAnswer(normalize_url(database_url))
    yield db
    db.dispose()


def twice(db: LosesAnAnswer, fn: Any, *args: Any) -> Any:
    db.armed, db.lost = 1, 0
    out = db.through_outages(fn, *args)
    assert db.lost == 1, "the first commit's answer was lost, and the call was run again"
    return out


def started(database: Database, tmp_path: Path, name: str) -> Publish:
    """Round 1 (K=2) of a one-problem campaign with a budget, created and not yet claimed."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "problem": "What is 2+2?", "answer": "4"}\n')
    submit(database, path, name, CampaignConfig(rounds=[2, 1], model="m", campaign_budget=10_000))
    with database.store() as store:
        (publish,) = start_runs(store, SETTINGS, 10)
    return publish


def test_a_lost_commit_answer_applies_nothing_twice(database, database_url: str, tmp_path: Path) -> None:
    publish = started(database, tmp_path, "lost")
    (first, a1), (second, a2) = publish.trajectories

    claim = twice(database, claims.claim, database, first, a1, "w", 60, None, (64, 128))
    assert claim is not None and claim.attempt == a1, "the retry re-claims its own trajectory"
    assert claim.reserved == 64, "... and finds the first block its lost commit took"
    assert row(database_url, "SELECT tokens_reserved FROM trajectory WHERE id = %s", first) == 64
    assert row(database_url, "SELECT tokens_reserved, tokens_granted FROM run") == (64, 128)

    def reserve(held: int) -> int:
        with database.store() as store:
            return budgets.reserve(store, claim.holder, 64, 0, SETTINGS.token_grant, held=held)

    assert twice(database, reserve, 64) == 64, "the retry finds the block it was given"
    assert row(database_url, "SELECT tokens_reserved FROM trajectory WHERE id = %s", first) == 128
    assert row(database_url, "SELECT tokens_reserved, tokens_granted FROM run") == (128, 128)

    done = GenerationResult(" The answer is \\boxed{4}.", "r", "stop", 5, 7)
    assert twice(database, claims.finish, database, claim, "w", done, None, Spent(7, 0, 5)) is False
    assert row(database_url, "SELECT count(*), sum(completion_tokens) FROM attempt") == (1, 7)
    assert row(database_url, "SELECT tokens_used, tokens_reserved, prompt_tokens FROM run") == (7, 0, 5)

    other = claims.claim(database, second, a2, "w", 60)
    assert other is not None
    handed = twice(database, claims.hand_back, database, other, "w", Spent(3, 0, 0), "drained")
    assert handed is False, "the retry finds the attempt fenced off by the first"
    assert row(database_url, "SELECT attempt, status FROM trajectory WHERE id = %s", second) == (
        a2 + 1,
        "pending",
    )
    assert row(database_url, "SELECT count(*), sum(completion_tokens) FROM attempt") == (2, 10)
    assert row(database_url, "SELECT tokens_used FROM run") == 10

    again = claims.claim(database, second, a2 + 1, "w", 60)
    assert again is not None
    assert claims.finish(database, again, "w", done, None, Spent(7, 0, 5))

    def advance() -> Any:
        with database.store() as store:
            return advance_round(store, SETTINGS, publish.round_id)

    assert twice(database, advance) is None, "the retry loses the guarded update the first won"
    assert row(database_url, "SELECT count(*) FROM round") == 2, "one next round, not two"
    assert row(database_url, "SELECT count(*) FROM trajectory") == 3


def test_a_claim_whose_block_came_from_the_free_grant_finds_that_block_again(
    database, database_url: str, tmp_path: Path
) -> None:
    """A re-claim reads its run's free grant as spent (by its own lost commit): it must find the block
    it holds, not take a second grant for it."""
    (first, a1), (second, a2) = started(database, tmp_path, "held").trajectories
    assert claims.claim(database, first, a1, "w", 60, None, (64, 128)) is not None  # a grant of 128
    again = twice(database, claims.claim, database, second, a2, "w", 60, None, (64, 128))
    assert again is not None and again.reserved == 64, "the block its lost commit took from the grant"
    assert row(database_url, "SELECT tokens_reserved, tokens_granted FROM run") == (128, 128), (
        "no second grant"
    )


def row(url: str, sql: str, *params: object) -> Any:
    with psycopg.connect(url) as conn:
        found = conn.execute(sql, params).fetchone()
    assert found is not None
    return found[0] if len(found) == 1 else tuple(found)
