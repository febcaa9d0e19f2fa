"""The control-plane guarantees on a real PostgreSQL, without a scheduler racing the test:
fenced claims and writes, settlement exactly once, a round advanced exactly once."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text

from pacore.campaigns.submit import submit
from pacore.core.campaign import CampaignConfig
from pacore.settings import Settings
from scheduler.rounds import advance_round, start_runs
from worker import claims
from worker.engine import GenerationResult

SETTINGS = Settings()


def started_round(database, tmp_path: Path, k: int = 4):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "problem": "What is 2+2?", "answer": "4"}\n')
    submit(database, path, "fencing", CampaignConfig(rounds=[k], model="m"))
    with database.store() as store:
        (publish,) = start_runs(store, SETTINGS, 10)
    return publish


def result(n: int) -> GenerationResult:
    return GenerationResult(f" The answer is \\boxed{{{n}}}.", "thinking", "stop", 5, n)


def test_a_stale_attempt_can_neither_claim_nor_write(database, tmp_path) -> None:
    publish = started_round(database, tmp_path)
    tid, attempt = publish.trajectories[0]
    assert claims.claim(database, tid, attempt + 1, "w1", 60) is None, "wrong attempt: no claim"
    claim = claims.claim(database, tid, attempt, "w1", 60)
    assert claim is not None and claim.request.messages == [{"role": "user", "content": "What is 2+2?"}]
    assert claims.claim(database, tid, attempt, "w2", 60) is None, (
        "already running: a duplicate message exits"
    )
    with database.engine.begin() as session:  # the reconciler re-drives it as attempt 2
        session.execute(
            text("UPDATE trajectory SET status = 'pending', attempt = 2 WHERE id = :id"), {"id": tid}
        )
    assert claims.finish(database, claim, "w1", result(7), None) is False, (
        "the late write of attempt 1 is fenced off"
    )
    second = claims.claim(database, tid, 2, "w2", 60)
    assert second is not None and claims.finish(database, second, "w2", result(9), None)
    with database.engine.begin() as session:
        row = session.execute(
            text("SELECT status, content, completion_tokens, worker_id FROM trajectory WHERE id = :id"),
            {"id": tid},
        ).one()
        used = session.execute(text("SELECT sum(tokens_used) FROM run")).scalar()
    assert tuple(row) == ("done", " The answer is \\boxed{9}.", 9, "w2") and used == 9


def test_a_batch_claims_in_one_statement_only_what_each_pair_may_generate(database, tmp_path) -> None:
    publish = started_round(database, tmp_path, k=5)
    (stale, a1), (elsewhere, a2), (done, a3), (mine, a4), (free, a5) = publish.trajectories
    assert claims.claim(database, elsewhere, a2, "w2", 60) is not None  # running on another worker
    assert claims.claim(database, mine, a4, "w1", 60) is not None  # this worker's, its answer lost
    done_claim = claims.claim(database, done, a3, "w2", 60)
    assert done_claim is not None and claims.finish(database, done_claim, "w2", result(3), None)
    pairs = [(stale, a1 + 1), (elsewhere, a2), (done, a3), (mine, a4), (free, a5)]
    got = claims.claim_batch(database, pairs, "w1", 60)
    assert [None if c is None else c.trajectory_id for c in got] == [None, None, None, mine, free]
    with database.engine.begin() as session:
        rows = session.execute(
            text("SELECT id, status, worker_id FROM trajectory WHERE id = ANY(:ids) ORDER BY id"),
            {"ids": [t for t, _ in pairs]},
        ).all()
    assert [tuple(r) for r in rows] == [
        (stale, "pending", None),
        (elsewhere, "running", "w2"),
        (done, "done", "w2"),
        (mine, "running", "w1"),
        (free, "running", "w1"),
    ]


def test_settlement_happens_once_per_attempt(database, tmp_path) -> None:
    publish = started_round(database, tmp_path)
    tid, attempt = publish.trajectories[0]
    claim = claims.claim(database, tid, attempt, "w1", 60)
    assert claims.finish(database, claim, "w1", result(11), None)
    assert claims.finish(database, claim, "w1", result(11), None) is False
    with database.engine.begin() as session:
        ledger = session.execute(text("SELECT count(*), sum(completion_tokens) FROM attempt")).one()
        used = session.execute(text("SELECT sum(tokens_used), sum(prompt_tokens) FROM run")).one()
    assert tuple(ledger) == (1, 11) and tuple(used) == (11, 5)


def test_a_round_advances_exactly_once_under_concurrent_callbacks(database, tmp_path) -> None:
    publish = started_round(database, tmp_path)
    for tid, attempt in publish.trajectories:
        claims.finish(database, claims.claim(database, tid, attempt, "w", 60), "w", result(tid), None)

    def advance(_: int) -> bool:
        with database.store() as store:
            return advance_round(store, SETTINGS, publish.round_id) is not None

    with ThreadPoolExecutor(8) as pool:
        winners = sum(pool.map(advance, range(8)))
    with database.engine.begin() as session:
        rounds = session.execute(text("SELECT index, k, status FROM round ORDER BY index")).all()
        trajectories = session.execute(text("SELECT count(*) FROM trajectory")).scalar()
    assert (
        winners == 1
        and [tuple(r) for r in rounds] == [(1, 4, "done"), (2, 1, "generating")]
        and trajectories == 5
    )


def test_a_round_with_unfinished_trajectories_does_not_advance(database, tmp_path) -> None:
    publish = started_round(database, tmp_path)
    tid, attempt = publish.trajectories[0]
    claims.finish(database, claims.claim(database, tid, attempt, "w", 60), "w", result(1), None)
    with database.store() as store:
        assert advance_round(store, SETTINGS, publish.round_id) is None
        assert store.conn.execute("SELECT status FROM round").fetchone() == ("generating",)


def finish_all(database, publishes) -> None:
    for publish in publishes:
        for tid, attempt in publish.trajectories:
            claims.finish(database, claims.claim(database, tid, attempt, "w", 60), "w", result(tid), None)


def advance_together(database, round_ids: list[int]) -> list:
    """Advance rounds in concurrent transactions released at the same instant."""
    import threading

    barrier = threading.Barrier(len(round_ids))
    follow_ups: list = []

    def advance(round_id: int) -> None:
        barrier.wait()
        with database.store() as store:
            follow = advance_round(store, SETTINGS, round_id)
        if follow:
            follow_ups.append(follow)

    threads = [threading.Thread(target=advance, args=(rid,)) for rid in round_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return follow_ups


def test_the_campaign_is_done_when_its_last_runs_finish_at_the_same_moment(database, tmp_path) -> None:
    """Two final rounds advancing concurrently: each transaction alone still sees the other run going."""
    path = tmp_path / "two.jsonl"
    path.write_text('{"id": "a", "problem": "A"}\n{"id": "b", "problem": "B"}\n')
    for n in range(5):
        submit(database, path, f"pair{n}", CampaignConfig(rounds=[1], model="m"))
        with database.store() as store:
            publishes = start_runs(store, SETTINGS, 10)
        for _ in range(2):  # round 1, then the final round
            finish_all(database, publishes)
            publishes = advance_together(database, [p.round_id for p in publishes])
        with database.engine.begin() as session:
            status = session.execute(
                text("SELECT status FROM campaign WHERE name = :n"), {"n": f"pair{n}"}
            ).scalar()
        assert status == "done"
