"""Which finished rounds the dispatch tick advances in their chord callback's stead: a round that
generated its own trajectories once its last one finished CALLBACK_GRACE_SECONDS ago (its callback is
late: lost), so that the tick never races a callback on time; a round drawn from a pool (no chord of its
own) at once. The start-up sweep takes every one (grace 0). On real PostgreSQL; the finish times are
set by hand."""

from __future__ import annotations

from pathlib import Path

import redis
from sqlalchemy import text

from pacore.campaigns.submit import submit
from pacore.core.campaign import CampaignConfig
from pacore.settings import Settings
from pacore.store.database import Database
from scheduler.app import make_app, runtime
from scheduler.rounds import start_runs
from scheduler.tasks import CALLBACK_GRACE_SECONDS, dispatch_tick
from tests.fleet import claim_redis_db


def started(db: Database, tmp_path: Path, name: str, pool: int | None = None) -> list[int]:
    """A campaign of one problem started: the ids of the rounds created (with a pool: its pool round,
    then the run's round 1 drawn from it)."""
    path = tmp_path / f"{name}.jsonl"
    path.write_text('{"id": "a", "problem": "What is 2+2?", "answer": "4"}\n')
    submit(db, path, name, CampaignConfig(rounds=[2, 1], model="m", pool=pool))
    with db.store() as store:
        start_runs(store, Settings(), 10)
    with db.engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT r.id FROM round r JOIN run ON run.id = r.run_id JOIN campaign c ON c.id = run.campaign_id "
                "WHERE c.name = :n ORDER BY r.id"
            ),
            {"n": name},
        )
        return [int(r) for (r,) in rows]


def finished(db: Database, seconds_ago: float) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE trajectory SET status = 'done', finished_at = now() - make_interval(secs => :s)"),
            {"s": seconds_ago},
        )


def stuck(db: Database, grace: float) -> list[int]:
    with db.store() as store:
        return sorted(store.stuck_rounds(grace=grace))


def test_a_round_whose_callback_is_on_time_is_left_to_it(database: Database, tmp_path: Path) -> None:
    (own,) = started(database, tmp_path, "own")
    finished(database, 1)  # its last trajectory finished a second ago: the callback is on its way
    assert stuck(database, CALLBACK_GRACE_SECONDS) == []
    assert stuck(database, 0) == [own]  # the start-up sweep takes it
    finished(database, CALLBACK_GRACE_SECONDS + 1)  # no callback came
    assert stuck(database, CALLBACK_GRACE_SECONDS) == [own]


def test_a_round_drawn_from_a_pool_is_advanced_at_once(database: Database, tmp_path: Path) -> None:
    pool_round, drawn = started(database, tmp_path, "pooled", pool=4)
    finished(database, 0)
    # the pool's own round waits for its callback; the round drawn from it has none
    assert stuck(database, CALLBACK_GRACE_SECONDS) == [drawn]
    assert stuck(database, 0) == sorted([pool_round, drawn])


def test_a_tick_woken_again_within_the_dispatch_interval_leaves_the_search_for_stuck_rounds_to_a_later_one(
    database: Database, tmp_path: Path, redis_available: str
) -> None:
    """Runs that end wake the tick hundreds of times a second in a busy fleet; the search for stuck
    rounds (every generating round) runs once per dispatch interval. Real dispatch ticks; an advance
    publishes the next round to a Redis database of this test's own."""
    broker = claim_redis_db(redis_available)
    app = make_app(Settings(dispatch_interval=3600, broker_url=broker), database)
    try:
        started(database, tmp_path, "first")
        finished(database, CALLBACK_GRACE_SECONDS + 1)
        dispatch_tick(app)  # the first tick searches: round 1 advances, and round 2 is created
        assert stuck(database, CALLBACK_GRACE_SECONDS) == []

        (second,) = started(database, tmp_path, "second")
        finished(database, CALLBACK_GRACE_SECONDS + 1)  # the first's round 2, the second's round 1
        late = stuck(database, CALLBACK_GRACE_SECONDS)
        assert len(late) == 2 and second in late
        dispatch_tick(app)  # woken within the interval: no search
        assert stuck(database, CALLBACK_GRACE_SECONDS) == late
        runtime(app).checks_due = 0  # the interval is over
        dispatch_tick(app)
        assert stuck(database, CALLBACK_GRACE_SECONDS) == []
        with database.engine.begin() as conn:
            rows = conn.execute(text("SELECT status FROM round WHERE id = ANY(:ids)"), {"ids": late})
            assert list(rows.scalars()) == ["done", "done"]
    finally:
        app.close()
        redis.Redis.from_url(broker).flushdb()
