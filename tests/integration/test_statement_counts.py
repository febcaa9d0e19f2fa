"""Statements and transactions on the hot path, counted at the database door (`Database.sent`) as it
sends them to PostgreSQL: per trajectory (its claim, each token block, its finish) and per round advance. They cost
every GPU-second of orchestration, so they must not grow back silently: a change that adds or removes a
statement here changes this table on purpose (and says so in its commit)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from pacore.campaigns.submit import submit
from pacore.core.campaign import CampaignConfig
from pacore.core.vocabulary import CampaignStatus
from pacore.settings import Settings
from pacore.store import budgets
from pacore.store.database import Database, normalize_url
from pacore.store.endings import Progress
from scheduler.rounds import advance_round, start_runs
from worker import claims
from worker.claims import Spent
from worker.engine import GenerationResult

SETTINGS = Settings()

# (statements, transactions, connection pings) per operation, on a worker's or scheduler's database
# (no pre-ping). Before the store (issue #12): claim 2, block 4, block with a grant 6, finish and settle 6,
# each transaction with a pre-ping round trip, and a round advance in 3 transactions (now 2: the advance,
# then the publish stamp; the round hop is read by the advance itself).
EXPECTED = {
    "claim, with its first block": (2, 1, 0),  # the checkpoint comes back with the claim; the block: 1
    # the claim, which reads that its run has no free grant (no block is asked of it: 5 statements before
    # 2026-12-06); then the grant in a short transaction of its own (the run locked, the campaign grants:
    # it locks the campaign's row until it commits); then the block
    "claim, with its first block and a grant": (4, 3, 0),
    "block": (1, 1, 0),  # trajectory and run, one conditional update
    # result, completion order, checkpoint dropped, ledger, run settled; committed on its own, with no
    # BEGIN and COMMIT round trips (a transaction of its own before 2026-12-07)
    "finish and settle": (1, 0, 0),
    # won with its run's context, outcomes and the plan's counters; references with the decision; the
    # round with its trajectories linked to it (11 before 2026-12-06: context, references, links and
    # the plan's three reads apart; 6 before 2026-12-07: outcomes, counters and the round apart)
    "round advance (next round created)": (3, 1, 0),
    "hand-back": (1, 1, 0),  # fenced off, the next attempt started, the ledger, the run settled
    # the round's 2 (won with its context and outcomes, references with the decision; 5 before
    # 2026-12-06, 3 before 2026-12-07), then the run ended with its tokens moved to the campaign, the
    # campaign's progress read and the campaign ended
    "round advance (the run's end, the campaign's last)": (5, 1, 0),
}


class Counted:
    """Statements and transactions as the database door sends them (`Database.sent`), and the round
    trips of connection pre-pings (the pool's checkouts)."""

    def __init__(self, db: Database) -> None:
        self.sent = db.sent
        self.checkouts = 0
        event.listen(db.engine.pool, "checkout", self._checkout)
        self.pre_ping = bool(db.engine.pool._pre_ping)  # type: ignore[attr-defined]

    def _checkout(self, *args: Any) -> None:
        self.checkouts += 1

    @property
    def pings(self) -> int:
        return self.checkouts if self.pre_ping else 0  # a pre-ping is a round trip on every checkout

    @contextmanager
    def measuring(self, label: str, into: dict[str, tuple[int, int, int]]) -> Iterator[None]:
        before = (self.sent.statements, self.sent.transactions, self.pings)
        yield
        after = (self.sent.statements, self.sent.transactions, self.pings)
        into[label] = (after[0] - before[0], after[1] - before[1], after[2] - before[2])


def test_statements_and_transactions_per_trajectory_and_per_round_advance(
    database_url: str, tmp_path: Path
) -> None:
    database = Database(normalize_url(database_url), pre_ping=False)  # as `pacore worker` and `scheduler`
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "problem": "What is 2+2?", "answer": "4"}\n')
    # a run's grant covers three blocks: the first claim takes a grant with its block, the rest do not
    config = CampaignConfig(rounds=[2, 1], model="m", campaign_budget=10_000)
    campaign_id = submit(database, path, "counted", config).campaign_id
    settings = SETTINGS.model_copy(update={"token_block": 64, "token_grant": 192})
    first_block = (settings.token_block, settings.token_grant)
    with database.store() as store:
        (publish,) = start_runs(store, settings, 10)
    counted = Counted(database)
    seen: dict[str, tuple[int, int, int]] = {}
    measure: Callable[[str], Any] = lambda label: counted.measuring(label, seen)  # noqa: E731

    (first, a1), (second, a2) = publish.trajectories
    with measure("claim, with its first block and a grant"):
        claim = claims.claim(database, first, a1, "w", 60, None, first_block)
    with measure("claim, with its first block"):
        other = claims.claim(database, second, a2, "w", 60, None, first_block)
    assert claim is not None and other is not None and claim.reserved == other.reserved == 64
    with measure("block"), database.store() as store:
        assert budgets.reserve(store, claim.holder, 64, 10, settings.token_grant, held=64) == 64
    with measure("finish and settle"):
        assert claims.finish(database, claim, "w", result(7), None, Spent(7, 0, 5))
    assert claims.finish(database, other, "w", result(8), None, Spent(8, 0, 5))
    with measure("round advance (next round created)"), database.store() as store:
        follow = advance_round(store, settings, publish.round_id)
    assert follow is not None
    ((tid, attempt),) = follow.trajectories
    held = claims.claim(database, tid, attempt, "w", 60, None, first_block)
    assert held is not None
    with measure("hand-back"):
        assert claims.hand_back(database, held, "w", Spent(3, 0, 5), "drained")
    attempt += 1
    while follow is not None:  # to the final round: the last advance (measured) ends the run
        again = claims.claim(database, tid, attempt, "w", 60, None, first_block)
        assert again is not None and claims.finish(database, again, "w", result(4), None, Spent(4, 0, 5))
        with measure("round advance (the run's end, the campaign's last)"), database.store() as store:
            ended = advance_round(store, settings, follow.round_id)
        follow = ended
        if follow is not None:
            ((tid, attempt),) = follow.trajectories
    with database.store() as store:
        assert store.campaign_progress(campaign_id) == Progress(CampaignStatus.DONE, 0)

    assert seen == EXPECTED


def result(n: int) -> GenerationResult:
    return GenerationResult(f" The answer is \\boxed{{{n}}}.", "thinking", "stop", 5, n)


def test_a_batch_whose_run_has_no_grant_asks_one_grant_and_no_block_before_it(
    database_url: str, tmp_path: Path
) -> None:
    """Round 1 of a run (K=4, one batch): one statement claims the four (one each before 2026-12-07) and
    reads that the run has no free grant, so none asks it for a block (before 2026-12-06 each did, and
    was refused: 4 more statements); one grant for the batch in a transaction of its own, then the four
    blocks in one more, and one statement (one each before 2026-12-07)."""
    database = Database(normalize_url(database_url), pre_ping=False)
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "problem": "What is 2+2?", "answer": "4"}\n')
    submit(database, path, "batch", CampaignConfig(rounds=[4, 1], model="m", campaign_budget=10_000))
    settings = SETTINGS.model_copy(update={"token_block": 64, "token_grant": 512})
    with database.store() as store:
        (publish,) = start_runs(store, settings, 10)
    counted = Counted(database)
    seen: dict[str, tuple[int, int, int]] = {}
    with counted.measuring("batch of 4", seen):
        held = claims.claim_batch(database, publish.trajectories, "w", 60, None, (64, 512))
    assert [c.reserved if c else None for c in held] == [64, 64, 64, 64]
    # the batch's claim; the grant (the run locked, the campaign grants); the 4 blocks
    assert seen == {"batch of 4": (1 + 2 + 1, 3, 0)}


def test_a_statement_committed_on_its_own_opens_no_transaction_and_runs_alone(database) -> None:
    """`Database.statement`: its write is visible to another connection as soon as it ran, before the
    store closes (no BEGIN held it back for a COMMIT); a second statement is refused; and the connection
    goes back to the pool in transactions again (a store that fails rolls its writes back)."""
    with database.statement() as store:
        params = {
            "name": "alone",
            "config": "{}",
            "source": "x",
            "problem_budget": None,
            "campaign_budget": None,
        }
        campaign_id = store.scalar("insert_campaign", params)
        with psycopg.connect(database.url.replace("+psycopg", "")) as other:
            seen = other.execute("SELECT count(*) FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
        assert seen == (1,), "committed as it ran"
        with pytest.raises(RuntimeError, match="1 statement"):
            store.scalar("campaign_progress", {"id": campaign_id})
    with pytest.raises(ZeroDivisionError), database.store() as store:
        store.execute("set_archived_to", {"id": campaign_id, "path": "/nowhere"})
        raise ZeroDivisionError
    with database.store() as store:
        assert store.archive_state(campaign_id)[0] is None, "the failed store's write was rolled back"
