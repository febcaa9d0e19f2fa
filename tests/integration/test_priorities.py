"""Message priorities (scheduler/publish.py): a worker takes a started run's next round before the first
rounds of new runs, so that a round hop does not queue behind them; the reconciler, which tells lost
messages by the oldest one still queued, reads the list of every priority. Real PostgreSQL and Redis;
the messages are read as a consumer reads them (kombu's Redis transport)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import kombu
import pytest
import redis
from celery import Celery
from sqlalchemy import text

from pacore.campaigns.submit import submit
from pacore.core.campaign import CampaignConfig
from pacore.settings import Settings
from pacore.store.database import Database
from scheduler.advance import advance_and_publish
from scheduler.app import generation_queue, make_app
from scheduler.reconciler import Reconciler
from scheduler.tasks import dispatch_tick
from tests.fleet import claim_redis_db

MODEL = "m"
PROBLEMS = 3


@pytest.fixture
def app(database: Database, redis_available: str) -> Iterator[Celery]:
    broker = claim_redis_db(redis_available)
    app = make_app(Settings(broker_url=broker), database)
    try:
        yield app
    finally:
        app.close()
        redis.Redis.from_url(broker).flushdb()


def one_run_advanced(app: Celery, db: Database, tmp_path: Path) -> dict[int, list[int]]:
    """A campaign of PROBLEMS problems (K=2, then the final round), its runs started by a real dispatch
    tick, which publishes their first rounds; then the first run's round 1 is done and advanced, which
    publishes its round 2. Returns each round 1's id and its trajectories, in the order published."""
    path = tmp_path / "problems.jsonl"
    path.write_text(
        "".join(
            f'{{"id": "p{i}", "problem": "What is {i}+2?", "answer": "{i + 2}"}}\n' for i in range(PROBLEMS)
        )
    )
    submit(db, path, "c", CampaignConfig(rounds=[2], model=MODEL))
    dispatch_tick(app)
    rounds = rounds_of(db, 1)
    first = next(iter(rounds))
    finish(db, rounds[first])
    advance_and_publish(app, first)
    return rounds


def rounds_of(db: Database, index: int) -> dict[int, list[int]]:
    with db.engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT r.id, array_agg(t.id ORDER BY t.id) FROM round r JOIN trajectory t ON t.round_id = r.id "
                "WHERE r.index = :i GROUP BY r.id ORDER BY r.id"
            ),
            {"i": index},
        )
        return {int(r): [int(t) for t in ts] for r, ts in rows}


def finish(db: Database, trajectory_ids: list[int]) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE trajectory SET status = 'done', content = 'It is \\boxed{4}.', finished_at = now() "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": trajectory_ids},
        )


def consume(app: Celery, queue: str, n: int) -> list[list[Any]]:
    """The arguments of the next `n` messages of a queue, taken one at a time as a consumer takes them."""
    got: list[list[Any]] = []

    def take(body: Any, message: kombu.Message) -> None:
        got.append(body[0])
        message.ack()

    with (
        app.connection_for_read() as connection,
        kombu.Consumer(connection, [kombu.Queue(queue)], callbacks=[take], accept=["json"]) as consumer,
    ):
        consumer.qos(prefetch_count=1)
        while len(got) < n:
            connection.drain_events(timeout=10)
    return got


def test_a_started_runs_next_round_goes_before_new_runs(
    database: Database, app: Celery, tmp_path: Path
) -> None:
    rounds = one_run_advanced(app, database, tmp_path)
    ((hop,),) = rounds_of(database, 2).values()

    messages = consume(app, generation_queue(MODEL), PROBLEMS + 1)
    carried = [[t for t, _ in args[0]] for args in messages]
    # the started run's round 2, published last, is taken first; then the new runs' rounds 1 in order
    assert carried == [[hop], *rounds.values()]


def test_the_reconciler_reads_the_oldest_message_of_every_priority(
    database: Database, app: Celery, tmp_path: Path
) -> None:
    """A pending row published well before the oldest queued message has left its queue and is
    published again: the oldest queued is a new run's round 1 here, in the list of lower priority,
    though a started run's round 2 heads the other list."""
    one_run_advanced(app, database, tmp_path)
    with database.engine.begin() as conn:
        oldest, newest = conn.execute(
            text("SELECT min(published_at), max(published_at) FROM trajectory WHERE status = 'pending'")
        ).one()
    assert oldest < newest  # published by two statements: the tick's, then the advance's

    reconciler = Reconciler(app)
    lease = timedelta(seconds=Settings().lease_seconds)
    cutoff = datetime.fromisoformat(reconciler.undelivered_before()[MODEL])
    assert cutoff == oldest - lease
