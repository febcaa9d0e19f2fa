"""Writing rounds: starting runs, planning and creating a round with its trajectories, and advancing a
finished round.

Every function takes the store of an open transaction and leaves committing to the caller, so that each
decision and its writes land in one transaction (ARCHITECTURE.md §3 rule 3). Messages are published
after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from pacore.core.answers import extract_boxed
from pacore.core.budget import starved_end
from pacore.core.campaign import CampaignConfig
from pacore.core.policy import RoundPlan, plan_round
from pacore.core.rounds import after_round
from pacore.core.vocabulary import RunStatus
from pacore.settings import Settings
from pacore.store import budgets
from pacore.store.base import StoreError
from pacore.store.counters import PlanCounters
from pacore.store.dispatch import Starved
from pacore.store.store import Store
from scheduler.admission import Admission

log = logging.getLogger("pacore.scheduler")


@dataclass(frozen=True)
class Publish:
    """A round to publish after commit: these (trajectory id, attempt) pairs, then complete_round (a
    chord; a round of one batch is its task with complete_round as its link). `waited`: for a round
    that follows a finished one, how long that one's last trajectory had been finished when it
    advanced (the round hop so far)."""

    round_id: int
    model: str
    trajectories: list[tuple[int, int]]
    waited: float | None = None


@dataclass(frozen=True)
class RunContext:
    run_id: int
    campaign_id: int
    cfg: CampaignConfig
    messages: list[dict[str, Any]]


def start_runs(
    store: Store,
    settings: Settings,
    limit: int,
    admission: Admission | None = None,
) -> list[Publish]:
    """Plan and create round 1 for up to `limit` pending runs of active campaigns, round-robin across
    campaigns (each campaign's runs in order; the turn goes on from the campaign served last). With
    admission control, only runs whose round 1 fits the room left are started."""
    after = admission.last_campaign if admission is not None else 0
    candidates = store.pending_runs_round_robin(limit, after)
    by_id = {row.run_id: row for row in store.lock_pending_runs(candidates)}
    rows = [by_id[i] for i in candidates if i in by_id]  # round-robin order
    out: list[Publish] = []
    for row in rows:
        try:
            cfg = CampaignConfig.model_validate(row.config)
        except ValidationError as exc:  # stored by hand, or before a limit existed
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            _cannot_start(
                store, row.run_id, row.campaign_id, f"its campaign's settings are invalid: {problems}"
            )
            continue
        run = RunContext(row.run_id, row.campaign_id, cfg, row.messages)
        if admission is not None and admission.left() < run.cfg.rounds[0]:
            break  # no room: a later tick starts it
        try:  # one run's refused start never holds back the others: its error lands on it
            with store.isolated():
                store.start_run(run.run_id)
                created = (
                    _start_from_pool(store, run)
                    if run.cfg.pool
                    else [
                        p for p in [next_round(store, settings, run, 1, run.messages, 0, row.counters)] if p
                    ]
                )
        except StoreError as exc:
            _cannot_start(store, run.run_id, run.campaign_id, f"the database refused it: {exc}")
            continue
        if admission is not None:
            admission.last_campaign = run.campaign_id
            if not admission.take(sum(len(p.trajectories) for p in created)):
                break  # a new pool larger than the room: created, published by a later tick
        out.extend(created)
    return out


def _cannot_start(store: Store, run_id: int, campaign_id: int, why: str) -> None:
    log.error("run %d of campaign %d could not start: %s", run_id, campaign_id, why)
    store.end_runs(RunStatus.FAILED, f"could not start: {why}", ids=[run_id])
    store.finish_campaign_if_done(campaign_id)


# -- the round-1 pool (`--pool N`) -------------------------------------------------------------------
#
# A pool is the round 1 of a pool run (sample -1) of a problem: N trajectories generated once. A run's
# round 1 generates nothing of its own: it links K1 of the pool's trajectories (seeded sample, without
# replacement) and advances when they are all finished (the dispatch tick advances rounds whose linked
# trajectories are done). A campaign with the same problem text, model and sampling reuses a pool of at
# least its N from any campaign. Pool tokens are spent, and counted in `used`, once: by the campaign
# whose pool run generated them; reports count, per run, the tokens of every trajectory its rounds use.


def _start_from_pool(store: Store, run: RunContext) -> list[Publish]:
    pool_round, publish = _pool_round(store, run)
    assert run.cfg.pool is not None
    positions = run.cfg.pool_sample(run.run_id)
    k = run.cfg.rounds[0]
    reason = f"round 1: K={k} sampled from a pool of {run.cfg.pool} (round {pool_round})"
    round_id = store.insert_round(run.run_id, 1, k, False, run.cfg.max_tokens, run.messages, reason)
    if round_id is not None:
        store.link_pool_trajectories(round_id, pool_round, positions)
    return [publish] if publish else []


def _pool_round(store: Store, run: RunContext) -> tuple[int, Publish | None]:
    """The round holding this problem's pool: an existing one at least N large with the same problem
    text, model and sampling (this campaign's first), else a new pool run's round 1."""
    cfg = run.cfg
    assert cfg.pool is not None
    found = store.find_pool_round(
        cfg.pool, run.messages, cfg.model, cfg.temperature, cfg.top_p, cfg.max_tokens, run.campaign_id
    )
    if found is not None:
        return int(found), None
    pool_run = store.insert_pool_run(run.run_id, f"round-1 pool of {cfg.pool}")
    if pool_run is None:  # this campaign's pool of the problem exists (made by an earlier start)
        return store.own_pool_round(run.run_id), None
    pool = RunContext(int(pool_run), run.campaign_id, cfg, run.messages)
    plan = RoundPlan("start", cfg.pool, False, cfg.max_tokens, f"round-1 pool of {cfg.pool} trajectories")
    publish = create_round(store, pool, 1, plan, run.messages)
    assert publish is not None
    return publish.round_id, publish


def next_round(
    store: Store,
    settings: Settings,
    run: RunContext,
    index: int,
    messages: list[dict[str, Any]],
    gathered: int,
    counters: PlanCounters,
) -> Publish | None:
    """Plan round `index` against the budget left (the run's `counters`, read with the round before or
    with the pending run), then create it, or end the run when nothing fits.

    The counters were read without a lock, perhaps before a budget raise committed. A raise holds the
    lock of every unfinished run until it commits and resumes the runs that ended before it: so a run is
    ended only on a plan made again after its lock is taken, on the counters read then."""
    plan = _plan(settings, run, index, gathered, counters)
    if plan.action == "exhausted" and store.lock_run(run.run_id):
        run_tokens, campaign_tokens = store.run_tokens(run.run_id)
        plan = _plan(
            settings, run, index, gathered, replace(counters, run=run_tokens, campaign=campaign_tokens)
        )
        if plan.action != "exhausted":
            log.info(
                "run %d: its budget grew since it was read; round %d planned again under its lock",
                run.run_id,
                index,
            )
    if plan.action == "exhausted":
        _finish_run(store, run, RunStatus.BUDGET_EXHAUSTED, plan.reason, None)
        return None
    return create_round(store, run, index, plan, messages)


def _plan(
    settings: Settings, run: RunContext, index: int, gathered: int, counters: PlanCounters
) -> RoundPlan:
    estimate = _estimate(counters.mean, run, settings)
    room = budgets.room(counters.run, counters.campaign)
    return plan_round(
        run.cfg.schedule, index, room, estimate, run.cfg.max_tokens, gathered, settings.min_trajectory_tokens
    )


def end_starved_run(store: Store, starved: Starved, wake: int) -> bool:
    """A run whose trajectories all wait for budget that none can give it ends `budget_exhausted`
    (`starved_end`); its waiting trajectories stay pending, so that a raised budget (or `retry
    --budget-exhausted`) resumes them where they stopped. `starved` was read without a lock: the run is
    decided again under its lock (as in `next_round`). Returns whether it ended. One run per
    transaction: its end locks the campaign's row, which another run's lock must not be taken behind."""
    if starved_end(starved.own, starved.shared, starved.all_starved, wake) is None:
        return False
    if not store.lock_run(starved.run_id):
        return False
    now = store.starved_runs(starved.run_id)
    reason = starved_end(now[0].own, now[0].shared, now[0].all_starved, wake) if now else None
    if reason is None:
        log.info("run %d: no longer out of budget when read again under its lock; it goes on", starved.run_id)
        return False
    if not store.end_runs(RunStatus.BUDGET_EXHAUSTED, reason, ids=[starved.run_id]):
        return False
    log.warning("run %d of campaign %d ended %s", starved.run_id, starved.campaign_id, reason)
    store.finish_campaign_if_done(starved.campaign_id)
    return True


def _estimate(mean: float | None, run: RunContext, settings: Settings) -> int:
    """Expected tokens of one trajectory: this run's mean so far, else a block (the reservation unit)."""
    default = min(run.cfg.max_tokens or settings.token_block, settings.token_block)
    return int(mean) if mean else default


def create_round(
    store: Store, run: RunContext, index: int, plan: RoundPlan, messages: list[dict[str, Any]]
) -> Publish | None:
    """The round and its K trajectory rows; idempotent on (run, index): None if it already exists."""
    seeds = [run.cfg.sampling_seed(run.run_id, index, i) for i in range(plan.k)]
    created = store.create_round(
        run.campaign_id, run.run_id, index, plan.is_final, plan.max_tokens, messages, plan.reason, seeds
    )
    if created is None:
        return None
    return Publish(created.round_id, run.cfg.model, [(tid, 1) for tid, _ in created.trajectories])


def advance_round(store: Store, settings: Settings, round_id: int) -> Publish | None:
    """Advance a round exactly once: the guarded UPDATE decides who wins (and reads the round's outcomes
    and its run's counters with it); the winner asks the pure round decision what follows and applies it
    (the next round, or the run's end), all in this transaction: three statements for a round followed
    by another."""
    won = store.win_round(round_id)
    if won is None:
        return None
    run = RunContext(won.run_id, won.campaign_id, CampaignConfig.model_validate(won.config), won.messages)
    outcomes = won.outcomes  # in completion order
    pool = won.sample < 0  # a round-1 pool's own run
    next_k = None if won.is_final or pool else run.cfg.schedule[won.index]
    cfg = run.cfg
    decision = after_round(next_k, won.index, run.messages, outcomes, cfg.seed, cfg.pass_truncated, pool)
    given = {o.trajectory_id: decision.messages[o.index] for o in outcomes}  # each one's reference
    store.record_round_decision(round_id, given, decision.order, decision.finish_order, decision.reason)
    if decision.kind == "next_round":
        assert decision.next_messages is not None
        gathered = len(decision.references)
        follow_up = next_round(
            store, settings, run, won.index + 1, decision.next_messages, gathered, won.counters
        )
        waited = None if won.waited is None else float(won.waited)
        return None if follow_up is None else replace(follow_up, waited=waited)
    if decision.kind == "fail":
        store.fail_round(round_id)
    assert decision.run_status is not None
    _finish_run(store, run, decision.run_status, decision.reason, decision.answer)
    return None


def _finish_run(
    store: Store, run: RunContext, status: RunStatus, reason: str, final_message: str | None
) -> None:
    answer = extract_boxed(final_message)
    store.end_runs(status, reason, ids=[run.run_id], message=final_message, answer=answer)
    store.finish_campaign_if_done(run.campaign_id)
