"""The store's contract on real PostgreSQL, method by method: what each state change writes, that it is
fenced by attempt, that running it twice (a retry after a lost COMMIT answer) changes nothing more, and
what it leaves in the counters. Expected numbers are worked by hand from the rules in
ARCHITECTURE.md §4 (`used + reserved <= granted` per run; a run's grant is held by its campaign until the
run ends), and read back with plain SQL, not through the store."""

from __future__ import annotations

import random
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from pacore.campaigns.control import set_campaign_budget
from pacore.campaigns.submit import submit
from pacore.core.budget import (
    CampaignTokens,
    RunTokens,
    apply_finish,
    apply_grant,
    apply_reopen,
    apply_reserve,
    apply_set_budget,
    apply_settle,
    fair_ask,
    grant_request,
    wake_tokens,
)
from pacore.core.campaign import CampaignConfig
from pacore.core.vocabulary import UNFINISHED, CampaignStatus, Outcome, RunStatus, TrajectoryStatus
from pacore.settings import Settings
from pacore.store import budgets
from pacore.store.budgets import Holder
from pacore.store.claims import Result
from pacore.store.database import Database
from pacore.store.endings import Scope
from scheduler.rounds import RunContext, end_starved_run, next_round, start_runs
from worker import claims

RUNNING, PENDING = [TrajectoryStatus.RUNNING], TrajectoryStatus.PENDING


class Campaign:
    """A submitted campaign with its runs started: `problems` runs of one round of `k` trajectories."""

    def __init__(
        self,
        db: Database,
        tmp_path: Path,
        name: str,
        problems: int = 1,
        k: int = 2,
        budget: int | None = None,
    ):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(f'{{"id": "p{i}", "problem": "P{i}"}}\n' for i in range(problems)))
        self.db = db
        self.id = submit(db, path, name, CampaignConfig(rounds=[k], model="m")).campaign_id
        with db.store() as store:
            publishes = start_runs(store, Settings(), 100)
        # The budget under test is set after the runs started: a small one would change their plan.
        with db.engine.begin() as session:
            session.execute(
                text("UPDATE campaign SET campaign_budget = :b WHERE id = :c"), {"b": budget, "c": self.id}
            )
        self.trajectories = [tid for p in publishes for tid, _ in p.trajectories]
        self.runs = sorted({self.run_of(tid) for tid in self.trajectories})

    def run_of(self, tid: int) -> int:
        return int(
            self.row(
                "SELECT r.run_id FROM trajectory t JOIN round r ON r.id = t.round_id WHERE t.id = :a", tid
            )[0]
        )

    def row(self, sql: str, a: Any = None) -> tuple:
        with self.db.engine.begin() as session:
            return tuple(session.execute(text(sql), {"a": a, "c": self.id}).one())

    def claim(self, tid: int, attempt: int = 1) -> claims.Claim:
        claim = claims.claim(self.db, tid, attempt, "w", 60)
        assert claim is not None
        return claim

    def run(self, run_id: int) -> tuple[int, int, int, int]:
        """(granted, used, reserved, wasted)"""
        return self.row(  # type: ignore[return-value]
            "SELECT tokens_granted, tokens_used, tokens_reserved, tokens_wasted FROM run WHERE id = :a",
            run_id,
        )

    def tokens(self) -> tuple[int, int]:
        """The campaign's (used, reserved)."""
        return self.row("SELECT tokens_used, tokens_reserved FROM campaign WHERE id = :c")  # type: ignore[return-value]

    def trajectory(self, tid: int) -> tuple[str, int, int]:
        """(status, attempt, reserved)"""
        return self.row("SELECT status, attempt, tokens_reserved FROM trajectory WHERE id = :a", tid)  # type: ignore[return-value]

    def ledger(self, tid: int) -> list[tuple]:
        with self.db.engine.begin() as session:
            return [
                tuple(r)
                for r in session.execute(
                    text(
                        "SELECT attempt, outcome, preempted, completion_tokens, wasted_tokens FROM attempt "
                        "WHERE trajectory_id = :a ORDER BY attempt"
                    ),
                    {"a": tid},
                )
            ]


def reserve(
    c: Campaign, claim: claims.Claim, want: int, held: int, streamed: int = 0, minimum: int = 1
) -> Any:
    with c.db.store() as store:
        h = claim.holder
        return store.reserve_block(h.trajectory_id, h.attempt, h.run_id, want, minimum, streamed, held)


def grant(c: Campaign, run_id: int, ask: int, minimum: int = 1) -> int:
    with c.db.store() as store:
        return store.grant_to_run(run_id, c.id, ask, minimum)


def holding_30_and_10(
    db: Database, tmp_path: Path, name: str, budget: int
) -> tuple[Campaign, int, claims.Claim, claims.Claim]:
    """A run of two claimed trajectories, granted 100 and holding blocks of 30 and 10."""
    c = Campaign(db, tmp_path, name, budget=budget)
    (run_id,) = c.runs
    a, b = (c.claim(t) for t in c.trajectories)
    assert grant(c, run_id, 100) == 100
    assert reserve(c, a, 30, held=0).got == 30 and reserve(c, b, 10, held=0).got == 10
    return c, run_id, a, b


def test_a_block_comes_from_the_free_grant_only_fenced_and_once(database, tmp_path) -> None:
    c = Campaign(database, tmp_path, "blocks")
    tid = c.trajectories[0]
    claim = c.claim(tid)
    (run_id,) = c.runs
    assert reserve(c, claim, 10, held=0).got == 0, "no grant yet: nothing to take"
    assert grant(c, run_id, 100) == 100
    taken = reserve(c, claim, 30, held=0)
    assert (taken.before, taken.got) == (0, 30)
    again = reserve(c, claim, 30, held=0)  # the same request again: its first commit's answer was lost
    assert (again.before, again.got) == (30, 0), "the retry finds the block it took; takes no other"
    assert c.run(run_id) == (100, 0, 30, 0) and c.trajectory(tid)[2] == 30
    assert reserve(c, claim, 100, held=30, minimum=80).got == 0, "70 left is less than the minimum"
    assert reserve(c, claim, 100, held=30).got == 70
    assert c.run(run_id) == (100, 0, 100, 0) and c.trajectory(tid)[2] == 100
    stale = claims.Claim(Holder(tid, 2, run_id, c.id), claim.request)
    assert reserve(c, stale, 1, held=0).before is None, (
        "an attempt that does not run the trajectory is fenced"
    )


def test_a_grant_gives_the_ask_or_what_is_left_above_the_minimum(database, tmp_path) -> None:
    c = Campaign(database, tmp_path, "grants", budget=250)
    (run_id,) = c.runs
    assert grant(c, run_id, 100) == 100
    assert grant(c, run_id, 200, minimum=200) == 0, "150 left, 200 required"
    assert grant(c, run_id, 200, minimum=100) == 150
    assert grant(c, run_id, 1) == 0
    assert c.tokens() == (0, 250) and c.run(run_id) == (250, 0, 0, 0)


def test_a_run_whose_trajectories_all_wait_for_budget_gives_its_free_grant_back(database, tmp_path) -> None:
    """Refused a block, a trajectory settles and waits, pending; while another of its run's trajectories
    runs the run keeps its grant, and when none runs the free part goes back to the campaign."""
    c, run_id, a, b = holding_30_and_10(database, tmp_path, "idle", budget=250)
    first, second = a.trajectory_id, b.trajectory_id
    assert claims.hand_back(database, a, "w", claims.Spent(20, 0, 5), "waiting for budget")
    assert c.run(run_id) == (100, 20, 10, 0), "b still runs: the run keeps its grant"
    assert c.tokens() == (0, 100)
    assert claims.hand_back(database, b, "w", claims.Spent(5, 0, 5), "waiting for budget")
    assert c.run(run_id) == (25, 25, 0, 0), "none runs: granted shrinks to what was used"
    assert c.tokens() == (0, 25), "the campaign holds only the 25 used for the run"
    assert c.trajectory(first)[0] == c.trajectory(second)[0] == "pending"


def test_a_result_is_written_and_settled_once_and_an_overrun_is_charged_and_reported(
    database, tmp_path
) -> None:
    c, run_id, a, b = holding_30_and_10(database, tmp_path, "finish", budget=100)
    first = a.trajectory_id
    done = claims.GenerationResult(" \\boxed{4}", "", "stop", 5, 20)
    assert claims.finish(database, a, "w", done, None, claims.Spent(20, 5, 5))
    assert c.run(run_id) == (100, 20, 10, 5), "used 20 of its 30; its block goes back"
    assert not claims.finish(database, a, "w", done, None, claims.Spent(20, 5, 5)), "written once"
    assert c.run(run_id) == (100, 20, 10, 5) and len(c.ledger(first)) == 1
    # b held 10 and used 80 (an engine that sent more than it was asked for): used 20 + 80 and reserved
    # 10 - 10 make 100, which the grant of 100 still covers: nothing is forced
    assert claims.finish(database, b, "w", done, None, claims.Spent(80, 0, 5))
    assert c.run(run_id) == (100, 100, 0, 5) and c.tokens() == (0, 100)
    c2 = Campaign(database, tmp_path, "overrun", budget=100)
    (run2,) = c2.runs
    over = c2.claim(c2.trajectories[0])
    assert grant(c2, run2, 100) == 100 and reserve(c2, over, 10, held=0).got == 10
    with database.store() as store:
        (finished,) = store.finish_attempts(
            [Result(over.trajectory_id, 1, run2, "w", "done", "x", None, "stop", 5, 150, None, 150, 0, 5)]
        )
    # used 150 + reserved 0 > granted 100: the grant grows by 50, charged to the campaign (100 + 50 > 100)
    assert (finished.written, finished.in_ledger, finished.reserved, finished.overrun) == (True, True, 10, 50)
    assert c2.run(run2) == (150, 150, 0, 0) and c2.tokens() == (0, 150)


def test_a_hand_back_fences_settles_what_the_worker_says_once(database, tmp_path) -> None:
    c = Campaign(database, tmp_path, "handback")
    tid = c.trajectories[0]
    (run_id,) = c.runs
    claim = c.claim(tid)
    assert grant(c, run_id, 100) == 100 and reserve(c, claim, 30, held=0).got == 30
    assert claims.hand_back(database, claim, "w", claims.Spent(7, 2, 3), "drained")
    assert c.trajectory(tid) == ("pending", 2, 0) and c.run(run_id) == (100, 7, 0, 2)
    assert c.ledger(tid) == [(1, Outcome.RETURNED, True, 7, 2)]
    assert not claims.hand_back(database, claim, "w", claims.Spent(7, 2, 3), "drained"), "fenced: once"
    assert c.run(run_id) == (100, 7, 0, 2) and len(c.ledger(tid)) == 1
    assert claims.claim(database, tid, 1, "w", 60) is None and claims.claim(database, tid, 2, "w", 60)


def test_a_handed_back_trajectory_is_published_again_at_once_a_first_attempt_after_its_grace(
    database, tmp_path
) -> None:
    """A row made moments ago may still be being published by its creator: the tick leaves an unstamped
    first attempt alone for the grace. A later attempt (handed back, or failed and tried again) has no
    creator publishing it: the tick publishes it at once, however young its row."""
    c = Campaign(database, tmp_path, "republish")
    handed, fresh = c.trajectories[0], c.trajectories[1]
    assert claims.hand_back(database, c.claim(handed), "w", claims.Spent(0, 0, 0), "drained")
    assert c.row("SELECT count(*) FROM trajectory WHERE campaign_id = :c AND published_at IS NULL") == (2,)
    with database.store() as store:
        found = {u.trajectory_id: u.attempt for u in store.unpublished_trajectories(3600, 1)}
    assert found == {handed: 2}, "the young first attempt waits for its grace; the handed-back one does not"
    with database.store() as store:
        assert fresh in {u.trajectory_id for u in store.unpublished_trajectories(0, 1)}


# A lost attempt's end was not seen: it may have generated up to all it held (no request of it could ask
# the engine for more), so all it held is spent; the part it checkpointed is kept, the rest wasted.
@pytest.mark.parametrize(("checkpointed", "used", "wasted"), [(0, 30, 30), (20, 30, 10), (30, 30, 0)])
def test_a_redrive_settles_what_the_lost_attempt_streamed(
    database, tmp_path, checkpointed, used, wasted
) -> None:
    c = Campaign(database, tmp_path, f"redrive{checkpointed}")
    tid = c.trajectories[0]
    (run_id,) = c.runs
    claim = c.claim(tid)
    assert grant(c, run_id, 100) == 100 and reserve(c, claim, 30, held=0, streamed=12).got == 30
    if checkpointed:
        with database.store() as store:
            store.append_chunks(
                [{"tid": tid, "attempt": 1, "seq": 0, "text": "x", "tokens": checkpointed, "token_ids": None}]
            )
    fence = (Scope(ids=[tid], attempt=1), RUNNING, PENDING, Outcome.PREEMPTED, "gone")
    with database.store() as store:
        (fenced,) = store.fence_attempts(*fence)
    assert (fenced.reserved, fenced.streamed, fenced.checkpointed, fenced.in_ledger) == (
        30,
        12,
        checkpointed,
        True,
    )
    assert c.run(run_id) == (100, used, 0, wasted) and c.trajectory(tid) == ("pending", 2, 0)
    with database.store() as store:
        assert store.fence_attempts(*fence) == [], "the old attempt is fenced off already"
    assert c.run(run_id) == (100, used, 0, wasted)


def test_a_cancel_fences_every_unfinished_attempt_and_ends_the_runs_once(database, tmp_path) -> None:
    c = Campaign(database, tmp_path, "cancel", problems=2, budget=1000)
    running = c.trajectories[0]
    run_id = c.run_of(running)
    claim = c.claim(running)
    assert grant(c, run_id, 100) == 100 and reserve(c, claim, 30, held=0, streamed=12).got == 30
    with database.store() as store:
        fenced = store.fence_attempts(
            Scope(campaign=c.id), UNFINISHED, TrajectoryStatus.CANCELLED, Outcome.CANCELLED, "cancelled"
        )
        ended = store.end_runs(RunStatus.CANCELLED, "cancelled", campaign=c.id)
    assert sorted(f.trajectory_id for f in fenced) == sorted(c.trajectories) and sorted(ended) == c.runs
    assert [f.in_ledger for f in fenced if f.trajectory_id == running] == [True]
    assert sum(len(c.ledger(t)) for t in c.trajectories) == 1, "only the running attempt enters the ledger"
    assert c.ledger(running) == [(1, Outcome.CANCELLED, True, 30, 30)], "all it held, all wasted"
    # the run's usage moved to the campaign and the rest of its grant went back
    assert c.run(run_id) == (30, 30, 0, 30) and c.tokens() == (30, 0)
    with database.store() as store:
        assert store.end_runs(RunStatus.CANCELLED, "again", campaign=c.id) == [], "a run ends once"
    assert c.tokens() == (30, 0)


def test_a_retried_run_counts_its_tokens_once(database, tmp_path) -> None:
    c = Campaign(database, tmp_path, "retry", k=1, budget=1000)
    (tid,) = c.trajectories
    (run_id,) = c.runs
    claim = c.claim(tid)
    assert grant(c, run_id, 100) == 100 and reserve(c, claim, 30, held=0).got == 30
    assert claims.finish(database, claim, "w", None, "engine said no", claims.Spent(25, 0, 0))
    round_id = c.row("SELECT round_id FROM trajectory WHERE id = :a", tid)[0]
    with database.store() as store:
        assert store.end_runs(RunStatus.FAILED, "failed", ids=[run_id]) == [run_id]
    assert c.run(run_id) == (25, 25, 0, 25) and c.tokens() == (25, 0)
    with database.store() as store:
        again = store.fence_attempts(
            Scope(rounds=[round_id]), [TrajectoryStatus.FAILED], PENDING, Outcome.FAILED, None
        )
        assert [(f.trajectory_id, f.attempt, f.in_ledger) for f in again] == [(tid, 1, False)]
        assert store.reopen_runs([run_id]) == [run_id] and store.reopen_runs([run_id]) == []
    # reopened: its usage is a grant it holds again, not the campaign's used
    assert (
        c.run(run_id) == (25, 25, 0, 25) and c.tokens() == (0, 25) and c.trajectory(tid) == ("pending", 2, 0)
    )
    with database.store() as store:
        store.end_runs(RunStatus.DONE, "done", ids=[run_id])
    assert c.tokens() == (25, 0), "ended again: counted once"


def run_statuses(db: Database, campaign_id: int) -> list[str]:
    with db.engine.begin() as session:
        rows = session.execute(
            text("SELECT status FROM run WHERE campaign_id = :c ORDER BY id"), {"c": campaign_id}
        )
        return [r[0] for r in rows]


def test_runs_read_as_starved_before_a_budget_raise_are_not_ended_after_it(database, tmp_path) -> None:
    """The chaos budget_edit failure: the dispatch tick read the starved runs while the budget was low;
    the raise committed and resumed none (none had ended yet); then the tick ended them all
    budget_exhausted, for good. The starved list here is read before the raise, as the tick read it."""
    settings = Settings()
    wake = wake_tokens(settings.token_block, settings.min_trajectory_tokens)
    c = Campaign(database, tmp_path, "raised-late", problems=2, k=1, budget=wake - 1)
    for tid in c.trajectories:
        assert claims.hand_back(database, c.claim(tid), "w", claims.Spent(), "waiting for budget")
    with database.store() as store:
        starved = store.starved_runs()
    assert [(s.run_id, s.shared, s.all_starved) for s in starved] == [(r, wake - 1, True) for r in c.runs]
    with database.store() as store:
        assert set_campaign_budget(store, "raised-late", 100 * wake) == (0, 0, 0), "none had ended"
    for run in starved:
        with database.store() as store:
            assert not end_starved_run(store, run, wake)
    assert run_statuses(database, c.id) == ["running", "running"], "the raise leaves room: they go on"

    with database.store() as store:  # lowered again, the same call ends them
        set_campaign_budget(store, "raised-late", wake - 1)
    for run in starved:
        with database.store() as store:
            assert end_starved_run(store, run, wake)
    assert run_statuses(database, c.id) == ["budget_exhausted", "budget_exhausted"]


def test_a_round_planned_on_counters_read_before_a_budget_raise_is_planned_again(database, tmp_path) -> None:
    """The same race in planning: a round's counters are read without a lock (with the round before,
    or with the pending run); a raise that commits after that read must not see the run end
    budget_exhausted after it resumed the runs that had ended."""
    path = tmp_path / "late.jsonl"
    path.write_text('{"id": "a", "problem": "A"}\n{"id": "b", "problem": "B"}\n')
    config = CampaignConfig(rounds=[2], model="m", campaign_budget=1)
    submitted = submit(database, path, "late", config)
    with database.store() as store:
        pending = store.lock_pending_runs(store.pending_runs_round_robin(10, 0))
    assert [p.counters.campaign.limit for p in pending] == [1, 1]
    with database.store() as store:
        assert set_campaign_budget(store, "late", 100_000) == (0, 0, 0)
    raised, control = pending
    with database.store() as store:
        for p in pending:
            store.start_run(p.run_id)
        run = RunContext(raised.run_id, raised.campaign_id, config, raised.messages)
        planned = next_round(store, Settings(), run, 1, raised.messages, 0, raised.counters)
        assert planned is not None and len(planned.trajectories) == 2, "planned on the raised budget"
    with database.store() as store:  # lowered again, the same call ends the other run
        set_campaign_budget(store, "late", 1)
    with database.store() as store:
        run = RunContext(control.run_id, control.campaign_id, config, control.messages)
        assert next_round(store, Settings(), run, 1, control.messages, 0, control.counters) is None
    assert run_statuses(database, submitted.campaign_id) == ["running", "budget_exhausted"]


@pytest.mark.parametrize("a_first", [True, False])
def test_results_in_one_statement_settle_their_run_as_if_each_came_alone_in_order(
    database, tmp_path, a_first
) -> None:
    """A holds 30 and b 10 of a grant of 100 (60 free). A used 100 (an engine that sent more than it
    was asked for), b used nothing. In that order, a's result alone needs used 100 + reserved 10 = 110:
    the grant grows by 10, charged to the campaign (10 past its budget of 100), and b's then returns its
    10. In the other order b's returns its 10 first, and a's 100 + 0 fits the grant: nothing grows.
    Summed as one (used 100, reserved 0) it would never grow."""
    c, run_id, a, b = holding_30_and_10(database, tmp_path, f"together-{a_first}", budget=100)

    def row(claim: claims.Claim, used: int) -> Result:
        return Result(
            claim.trajectory_id, 1, run_id, "w", "done", "x", None, "stop", 0, used, None, used, 0, 0
        )

    rows = [row(a, 100), row(b, 0)] if a_first else [row(b, 0), row(a, 100)]
    with database.store() as store:
        finished = store.finish_attempts(rows)
    by_id = {r.trajectory_id: f for r, f in zip(rows, finished, strict=True)}
    got = [(by_id[x.trajectory_id].reserved, by_id[x.trajectory_id].overrun) for x in (a, b)]
    if a_first:
        assert got == [(30, 10), (10, 0)], "a's overrun: the campaign's 110 is 10 past its budget"
        assert c.run(run_id) == (110, 100, 0, 0) and c.tokens() == (0, 110)
    else:
        assert got == [(30, 0), (10, 0)]
        assert c.run(run_id) == (100, 100, 0, 0) and c.tokens() == (0, 100)
    assert [c.ledger(x.trajectory_id) for x in (a, b)] == [
        [(1, "done", False, 100, 0)],
        [(1, "done", False, 0, 0)],
    ]


def test_the_last_two_runs_ending_at_once_end_the_campaign(database, tmp_path) -> None:
    """Each ending transaction checks for runs left after it ended its own. The second waits on the
    campaign row the first locked, so its check sees the first's end: one of them ends the campaign."""
    c = Campaign(database, tmp_path, "last-two", problems=2)
    first_run, second_run = c.runs
    first_locked, outcomes = threading.Event(), {}

    def end(run_id: int, signal: threading.Event | None, wait_for_waiter: bool) -> None:
        with database.store() as store:
            store.end_runs(RunStatus.DONE, "done", ids=[run_id])
            if signal:
                signal.set()
            if wait_for_waiter:
                _until_a_backend_waits_on_a_lock(database)
            outcomes[run_id] = store.finish_campaign_if_done(c.id)

    one = threading.Thread(target=end, args=(first_run, first_locked, True))
    one.start()
    assert first_locked.wait(30)
    two = threading.Thread(target=end, args=(second_run, None, False))
    two.start()
    one.join(60)
    two.join(60)
    assert outcomes == {first_run: None, second_run: CampaignStatus.DONE}
    assert c.row("SELECT status FROM campaign WHERE id = :c") == ("done",)


def _until_a_backend_waits_on_a_lock(db: Database) -> None:
    """Wait for the condition (another backend blocked on a lock), not for a time."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with db.engine.begin() as session:
            waiting = session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar()
        if waiting:
            return
    raise AssertionError("no backend waited on a lock")


def test_a_heartbeat_locks_its_trajectories_in_id_order(database, tmp_path) -> None:
    """Statements that lock several trajectories take them in id order (a claim, a result write), so
    that two never wait for each other. A heartbeat given its trajectories highest first, and blocked
    on the highest, must already hold the lowest: in the array's order it would hold nothing yet, and
    a result write of both (lowest first) would then wait on it while it waits on the result write."""
    c = Campaign(database, tmp_path, "heartbeat-order", k=2)
    low, high = sorted(c.trajectories)
    for tid in (low, high):
        c.claim(tid)
    # A fleet's other running trajectories, so that the heartbeat is planned as in production: each of
    # its trajectories looked up by key in the order given, not one scan of a few rows.
    others = Campaign(database, tmp_path, "others", problems=100, k=4)
    with database.engine.begin() as session:
        session.execute(
            text("UPDATE trajectory SET status = 'running', worker_id = 'x' WHERE id = ANY(:ids)"),
            {"ids": others.trajectories},
        )
        session.execute(text("ANALYZE trajectory"))
    extended: list[set[int]] = []

    def heartbeat() -> None:
        with database.store() as store:
            extended.append(store.extend_leases("w", 60, {high: 1, low: 1}))

    with database.engine.connect() as holder, holder.begin():
        holder.execute(text("SELECT 1 FROM trajectory WHERE id = :a FOR NO KEY UPDATE"), {"a": high})
        beating = threading.Thread(target=heartbeat)
        beating.start()
        _until_a_backend_waits_on_a_lock(database)
        with database.engine.connect() as other, other.begin():
            free = other.execute(
                text("SELECT id FROM trajectory WHERE id = :a FOR NO KEY UPDATE SKIP LOCKED"), {"a": low}
            ).all()
        assert free == [], "the heartbeat holds the lowest row while it waits for the highest"
    beating.join(30)
    assert extended == [{low, high}]


class SideBySide:
    """The store's statements and the pure arithmetic, applied to the same operations."""

    def __init__(self, c: Campaign, campaign_limit: int | None, run_limit: int | None, grant: int) -> None:
        with c.db.engine.begin() as session:
            params = {"b": campaign_limit, "l": run_limit, "c": c.id}
            session.execute(text("UPDATE campaign SET campaign_budget = :b WHERE id = :c"), params)
            session.execute(text("UPDATE run SET token_limit = :l WHERE campaign_id = :c"), params)
        self.c, self.grant = c, grant
        self.campaign = CampaignTokens(campaign_limit)
        self.runs = {r: RunTokens(run_limit) for r in c.runs}
        self.claims = {tid: c.claim(tid) for tid in c.trajectories}  # each trajectory's running attempt
        self.holds = dict.fromkeys(c.trajectories, 0)
        self.ended: set[int] = set()

    def block(self, tid: int, want: int) -> None:
        claim = self.claims[tid]
        with self.c.db.store() as store:
            got = budgets.reserve(store, claim.holder, want, 0, self.grant, self.holds[tid])
        run, expected = apply_reserve(self.runs[claim.holder.run_id], want, 1)
        if not expected:
            going = len(self.runs) - len(self.ended)
            ask = fair_ask(grant_request(run, want, self.grant), self.campaign.available, going, 1)
            run, self.campaign, _ = apply_grant(run, self.campaign, ask, 1)
            run, expected = apply_reserve(run, want, 1)
        self.runs[claim.holder.run_id] = run
        assert got == expected, f"a block of {want}"
        self.holds[tid] += got

    def end_attempt(self, tid: int, spent: int, with_result: bool) -> None:
        claim, db = self.claims[tid], self.c.db
        if with_result:
            done = claims.GenerationResult("x", None, "stop", 0, spent)
            assert claims.finish(db, claim, "w", done, None, claims.Spent(spent, 0, 0))
            with db.engine.begin() as session:  # made to run again, so that the test goes on
                bump = "UPDATE trajectory SET status = 'pending', attempt = attempt + 1 WHERE id = :t"
                session.execute(text(bump), {"t": tid})
        else:
            assert claims.hand_back(db, claim, "w", claims.Spent(spent, 0, 0), "drained")
        self.runs[claim.holder.run_id] = apply_settle(self.runs[claim.holder.run_id], self.holds[tid], spent)
        self.holds[tid] = 0
        self.claims[tid] = self.c.claim(tid, claim.attempt + 1)

    def finish_together(self, spent: dict[int, int]) -> None:
        """Results of several trajectories in one statement (a worker's group commit), in this order."""
        rows = [
            Result(t, c.attempt, c.holder.run_id, "w", "done", "x", None, "stop", 0, n, None, n, 0, 0)
            for t, n in spent.items()
            for c in [self.claims[t]]
        ]
        with self.c.db.store() as store:
            finished = store.finish_attempts(rows)
        assert [(f.written, f.in_ledger, f.reserved) for f in finished] == [
            (True, True, self.holds[t]) for t in spent
        ]
        for tid, n in spent.items():
            claim = self.claims[tid]
            self.runs[claim.holder.run_id] = apply_settle(self.runs[claim.holder.run_id], self.holds[tid], n)
            self.holds[tid] = 0
            with self.c.db.engine.begin() as session:  # made to run again, so that the test goes on
                bump = "UPDATE trajectory SET status = 'pending', attempt = attempt + 1 WHERE id = :t"
                session.execute(text(bump), {"t": tid})
            self.claims[tid] = self.c.claim(tid, claim.attempt + 1)

    def end_run(self, run_id: int) -> None:
        with self.c.db.store() as store:
            assert store.end_runs(RunStatus.FAILED, "ended", ids=[run_id]) == [run_id]
        self.runs[run_id], self.campaign = apply_finish(self.runs[run_id], self.campaign)
        self.ended.add(run_id)

    def reopen(self, run_id: int) -> None:
        with self.c.db.store() as store:
            assert store.reopen_runs([run_id]) == [run_id]
        self.runs[run_id], self.campaign = apply_reopen(self.runs[run_id], self.campaign)
        self.ended.discard(run_id)

    def set_budget(self, limit: int | None) -> None:
        with self.c.db.store() as store:
            store.set_campaign_budget(self.c.id, limit)
        for r, run in self.runs.items():  # the unfinished runs' free grants go back
            if r not in self.ended:
                self.runs[r] = replace(run, granted=run.used + run.reserved)
        held = sum(run.granted for r, run in self.runs.items() if r not in self.ended)
        self.campaign = apply_set_budget(self.campaign, limit, held)

    def idle(self, run_id: int) -> bool:
        return all(self.holds[t] == 0 for t, claim in self.claims.items() if claim.holder.run_id == run_id)

    def check(self, what: str) -> None:
        assert self.c.tokens() == (self.campaign.used, self.campaign.reserved), f"{what}: the campaign"
        for r, model in self.runs.items():
            assert self.c.run(r)[:3] == (model.granted, model.used, model.reserved), f"{what}: run {r}"


@pytest.mark.parametrize("seed", range(4))
def test_the_statements_do_what_the_budget_arithmetic_says(database, tmp_path, seed) -> None:
    """Random interleavings of blocks (with grants), results (alone, or several in one statement),
    hand-backs, run ends, reopenings and budget changes (set, lifted, changed), applied through the store's statements and, side by side, through
    the pure arithmetic of
    `pacore.core.budget` (itself checked by property tests in tests/unit/test_budget.py): after every
    step the counters in PostgreSQL are the arithmetic's."""
    rng = random.Random(seed)
    c = Campaign(database, tmp_path, f"model{seed}", problems=3, k=3)
    both = SideBySide(c, rng.choice([None, 3000]), rng.choice([None, 1500]), grant=400)
    for step in range(150):
        tid = rng.choice(c.trajectories)
        run_id = both.claims[tid].holder.run_id
        ops = [
            "block",
            "block",
            "block",
            "finish",
            "finish together",
            "hand back",
            "end run",
            "reopen",
            "budget",
        ]
        op = rng.choice(ops)
        if op == "budget":  # set, lifted or changed while runs hold grants
            both.set_budget(rng.choice([None, 1000, 3000, 6000]))
        elif op == "reopen" and run_id in both.ended:
            both.reopen(run_id)
        elif run_id in both.ended or op == "reopen":
            continue
        elif op == "block":
            both.block(tid, rng.randint(1, 300))
        elif op == "finish together":  # this one and others of running runs, across runs
            going = [t for t in c.trajectories if both.claims[t].holder.run_id not in both.ended]
            together = rng.sample(going, min(len(going), rng.randint(2, 5)))
            both.finish_together({t: rng.randint(0, both.holds[t]) for t in together})
        elif op in ("finish", "hand back"):
            both.end_attempt(tid, rng.randint(0, both.holds[tid]), with_result=op == "finish")
        elif op == "end run" and both.idle(run_id):
            both.end_run(run_id)
        both.check(f"step {step} ({op})")


def test_a_round_is_won_once_with_its_outcomes_in_completion_order_and_reasoning_only_without_content(
    database, tmp_path
) -> None:
    path = tmp_path / "won.jsonl"
    path.write_text('{"id": "p", "problem": "P"}\n')
    submit(database, path, "won", CampaignConfig(rounds=[2, 1], model="m", pass_truncated=True))
    with database.store() as store:
        (publish,) = start_runs(store, Settings(), 10)
    (first, _), (second, _) = publish.trajectories
    finished = (
        "UPDATE trajectory SET status = 'done', content = :content, reasoning = :reasoning, "
        "finish_reason = :why, finish_seq = :seq, completion_tokens = :n, finished_at = now() WHERE id = :id"
    )
    with database.engine.begin() as session:  # the second finished first; the first was cut in its reasoning
        session.execute(
            text(finished),
            {"id": second, "content": " C", "reasoning": "long", "why": "stop", "seq": 1, "n": 7},
        )
        session.execute(
            text(finished),
            {"id": first, "content": "", "reasoning": "cut", "why": "length", "seq": 2, "n": 9},
        )
    with database.store() as store:
        won = store.win_round(publish.round_id)
    assert won is not None and won.index == 1 and not won.is_final
    assert [(o.trajectory_id, o.index, o.content, o.reasoning, o.finish_reason) for o in won.outcomes] == [
        (second, 1, " C", None, "stop"),
        (first, 0, "", "cut", "length"),
    ]
    assert won.counters.mean == 8.0  # what planning the next round estimates a trajectory at: (7 + 9) / 2
    with database.store() as store:
        assert store.win_round(publish.round_id) is None  # won once
