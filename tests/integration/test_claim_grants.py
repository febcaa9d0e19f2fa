"""A batch's claim takes its first blocks from its run's free grant; when the run needs a grant, the
grant goes in a short transaction of its own (it locks the campaign's row until it commits), then the
blocks; a campaign without a budget grants without its row, inside the claim's own transaction. On
real PostgreSQL; the expected counters are worked by hand from the block and grant sizes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from pacore.campaigns.submit import submit
from pacore.core.campaign import CampaignConfig
from pacore.settings import Settings
from pacore.store.database import Database, normalize_url
from pacore.store.store import Store
from scheduler.rounds import start_runs
from worker import claims

BLOCK, GRANT = 64, 192  # a grant covers three blocks
SETTINGS = Settings().model_copy(update={"token_block": BLOCK, "token_grant": GRANT})


class BeforeTransaction(Database):
    """Runs `before[n]()` as the `n`th transaction (0-based) of this database opens."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.opened = 0
        self.before: dict[int, Callable[[], None]] = {}

    @contextmanager
    def store(self) -> Iterator[Store]:
        hook = self.before.get(self.opened)
        self.opened += 1
        if hook is not None:
            hook()
        with super().store() as store:
            yield store


def round_one(
    database: Database, tmp_path: Path, k: int, budget: int | None = 10_000
) -> tuple[int, list[tuple[int, int]]]:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "problem": "What is 2+2?", "answer": "4"}\n')
    config = CampaignConfig(rounds=[k, 1], model="m", campaign_budget=budget)
    campaign_id = submit(database, path, f"grants{k}-{budget}", config).campaign_id
    with database.store() as store:
        (publish,) = start_runs(store, SETTINGS, 10)
    return campaign_id, publish.trajectories


def counters(url: str, campaign_id: int) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT run.tokens_granted, run.tokens_reserved, c.tokens_reserved FROM run "
            "JOIN campaign c ON c.id = run.campaign_id WHERE c.id = %s",
            (campaign_id,),
        ).fetchone()
    assert row is not None
    return row


def test_a_batch_whose_run_needs_grants_takes_them_outside_its_claim(
    database_url: str, tmp_path: Path
) -> None:
    database = BeforeTransaction(normalize_url(database_url))
    campaign_id, pairs = round_one(database, tmp_path, 4)
    database.opened = 0
    got = claims.claim_batch(database, pairs, "w", 60, None, (BLOCK, GRANT))
    assert [c.reserved if c else None for c in got] == [BLOCK] * 4
    # 4 blocks of 64 = 256: one grant of the 256 asked (more than a grant of 192), taken once
    assert counters(database_url, campaign_id) == (256, 256, 256)
    assert database.opened == 3  # the claims, the grant, the blocks
    database.dispose()


def test_a_campaign_without_a_budget_grants_without_its_row_in_the_claims_transaction(
    database_url: str, tmp_path: Path
) -> None:
    """Its row stays locked by another transaction (as a run's end holds it) for the whole claim: the
    claim's grant does not wait for it, the campaign counts no reservation, and the claim, the grant and
    the blocks are one transaction."""
    database = BeforeTransaction(normalize_url(database_url))
    campaign_id, pairs = round_one(database, tmp_path, 4, budget=None)
    database.opened = 0
    got: list[list[claims.Claim | None]] = []
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM campaign WHERE id = %s FOR NO KEY UPDATE", (campaign_id,))
        claiming = threading.Thread(
            target=lambda: got.append(claims.claim_batch(database, pairs, "w", 60, None, (BLOCK, GRANT)))
        )
        claiming.start()
        claiming.join(timeout=60)  # the claim's end, or a minute of waiting on the row
        assert not claiming.is_alive(), "the claim waited on the campaign's row"
    assert [c.reserved if c else None for c in got[0]] == [BLOCK] * 4
    assert counters(database_url, campaign_id) == (256, 256, 0)  # the grant of 256 is the run's alone
    assert database.opened == 1
    database.dispose()


def test_a_batch_shares_its_runs_free_grant_in_trajectory_order(database_url: str, tmp_path: Path) -> None:
    """The run holds 150 tokens of free grant: in one statement the batch's blocks take 64, 64, then the
    22 left (at least one token: a block), and the fourth none; it takes a grant from the campaign (192:
    more than the 64 it needs), then its block."""
    database = Database(normalize_url(database_url))
    campaign_id, pairs = round_one(database, tmp_path, 4)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE run SET tokens_granted = 150 WHERE campaign_id = %s", (campaign_id,))
    got = claims.claim_batch(database, pairs, "w", 60, None, (BLOCK, GRANT))
    assert [c.reserved if c else None for c in got] == [64, 64, 22, 64]
    assert counters(database_url, campaign_id) == (150 + GRANT, 64 + 64 + 22 + 64, GRANT)


def test_a_campaign_without_a_budget_grants_what_the_runs_free_grant_lacks_before_the_blocks(
    database_url: str, tmp_path: Path
) -> None:
    """The run holds 150 tokens of free grant and its 4 blocks need 256: in the claim's transaction it
    takes a grant of 192 (more than the 106 it lacks), then each block is whole."""
    database = BeforeTransaction(normalize_url(database_url))
    campaign_id, pairs = round_one(database, tmp_path, 4, budget=None)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE run SET tokens_granted = 150 WHERE campaign_id = %s", (campaign_id,))
    database.opened = 0
    got = claims.claim_batch(database, pairs, "w", 60, None, (BLOCK, GRANT))
    assert [c.reserved if c else None for c in got] == [BLOCK] * 4
    assert counters(database_url, campaign_id) == (150 + GRANT, 4 * BLOCK, 0)
    assert database.opened == 1
    database.dispose()


def test_a_trajectory_taken_over_between_its_claim_and_its_block_leaves_the_others_their_blocks(
    database_url: str, tmp_path: Path
) -> None:
    database = BeforeTransaction(normalize_url(database_url))
    campaign_id, pairs = round_one(database, tmp_path, 2)
    (first, _), _ = pairs

    def take_over() -> None:  # as a re-drive elsewhere would, after the claim committed
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE trajectory SET attempt = attempt + 1 WHERE id = %s", (first,))

    database.opened = 0
    database.before[2] = take_over  # before the blocks' transaction
    got = claims.claim_batch(database, pairs, "w", 60, None, (BLOCK, GRANT))
    assert [c.reserved if c else None for c in got] == [0, BLOCK]
    # the grant (192: it covers the 128 asked) stays with the run; one block is held
    assert counters(database_url, campaign_id) == (GRANT, BLOCK, GRANT)
    database.dispose()
