"""The fenced writes of a generation: claim by (id, attempt), then write the result with the same guard.

A message for a row that is done, or whose attempt is stale, finds nothing to claim and exits; a late
duplicate can never overwrite a result (ARCHITECTURE.md §3 rule 1). Settlement of the attempt's tokens
happens in the same transaction as the result, once, through the attempt ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol, TypeVar

from pacore.core.budget import block_size
from pacore.core.campaign import CampaignConfig
from pacore.core.retry import after_failed_attempt
from pacore.core.vocabulary import Outcome, TrajectoryStatus
from pacore.store import budgets
from pacore.store.claims import Claimed, Finished, Result
from pacore.store.database import Database
from pacore.store.endings import FencedAttempt, Scope
from pacore.store.store import Store
from worker.checkpoint import Checkpoint
from worker.engine import GenerationRequest, GenerationResult

log = logging.getLogger("pacore.worker")

T = TypeVar("T")


@dataclass(frozen=True)
class Claim:
    holder: budgets.Holder
    request: GenerationRequest
    checkpoint: Checkpoint = Checkpoint()  # what earlier attempts streamed, to continue
    reserved: int = 0  # the first block, taken with the claim
    failed_before: int = 0  # attempts of this trajectory its own request failed

    @property
    def trajectory_id(self) -> int:
        return self.holder.trajectory_id

    @property
    def attempt(self) -> int:
        return self.holder.attempt


@dataclass(frozen=True)
class Spent:
    """What an attempt cost: all tokens streamed over its tries, of which wasted (not in the result)."""

    tokens: int = 0
    wasted: int = 0
    prompt: int = 0
    retries: int = 0
    note: str | None = None


def claim(
    db: Database,
    trajectory_id: int,
    attempt: int,
    worker_id: str,
    lease_seconds: int,
    max_model_len: int | None = None,
    first_block: tuple[int, int] | None = None,
) -> Claim | None:
    """Claim one trajectory for this attempt (`claim_batch` of one)."""
    return claim_batch(db, [(trajectory_id, attempt)], worker_id, lease_seconds, max_model_len, first_block)[
        0
    ]


def claim_batch(
    db: Database,
    pairs: list[tuple[int, int]],
    worker_id: str,
    lease_seconds: int,
    max_model_len: int | None = None,
    first_block: tuple[int, int] | None = None,
) -> list[Claim | None]:
    """Claim a batch of (trajectory, attempt) pairs in one statement; for each, its Claim or None when
    it is not to be generated (done, stale, cancelled, paused). A trajectory's `max_tokens` (the
    campaign's or the round's, the smaller) is clamped to the engine's context length: an engine refuses
    a larger one outright. With `first_block` (the block and grant sizes), the transaction also reserves
    each attempt's first block from its run's free grant, after a grant where the run's free grant falls
    short and its campaign has no budget (such a grant writes the run's row alone); blocks that need a
    grant from a budgeted campaign are taken after it (below). Safe to run twice: a retry re-claims its
    own rows and finds the blocks it took."""
    with db.store() as store:
        found = store.claim_trajectories(pairs, worker_id, lease_seconds) if pairs else {}
        rows = [_claimable(found.get(tid), tid, attempt, max_model_len) for tid, attempt in pairs]
        if first_block is None:
            return [None if row is None else row.claim for row in rows]
        block, grant = first_block
        granted = _grant_unbudgeted(store, rows, block, grant)
        claims = _first_blocks(store, rows, block, granted)
    # Blocks the run's free grant could not cover need a grant. A grant locks a budgeted campaign's row,
    # which every grant and run end of the campaign waits for until the transaction that took it commits:
    # it is taken in a short transaction of its own, not in the batch's claim, then the blocks in another.
    short = [(c, want) for c in claims if c is not None and c.reserved == 0 and (want := _want(c, block)) > 0]
    for (run_id, campaign_id), need in _needs(short).items():
        with db.store() as store:
            budgets.grant_ahead(store, run_id, campaign_id, need, grant)
    if not short:
        return claims
    taken: dict[int, Claim] = {}
    with db.store() as store:  # the blocks from the grants, in one statement
        held = budgets.reserve_first(store, [(c.holder, want) for c, want in short])
        for c, want in short:
            got = held.get(c.trajectory_id)
            if got is None:  # cancelled or taken over since the claim: its generation learns it at its
                continue  # first guard; the batch's others go on
            if got == 0:  # the grants fell short of it (a budget nearly spent): a block as any other,
                try:  # which asks its campaign for a grant of its own
                    got = budgets.reserve(store, c.holder, want, 0, grant, held=0)
                except budgets.Fenced:
                    continue
            taken[id(c)] = replace(c, reserved=got)
    return [None if c is None else taken.get(id(c), c) for c in claims]


class Claimable(NamedTuple):
    claim: Claim
    free_grant: int  # its run's, as the claim read it
    held: int  # what the attempt holds already (a re-claim after a lost answer)
    unbudgeted: bool  # its campaign has no budget, as the claim read it


def _claimable(
    row: Claimed | None, trajectory_id: int, attempt: int, max_model_len: int | None
) -> Claimable | None:
    """A claimed row as its Claim (None: not claimed), with the free grant and hold the claim read."""
    if row is None:
        return None
    ids = None if row.checkpoint_ids is None else tuple(row.checkpoint_ids)
    base = Checkpoint(row.checkpoint_text, row.checkpoint_tokens, ids)
    cfg = CampaignConfig.model_validate(row.config)
    caps = [m for m in (cfg.max_tokens, row.round_max_tokens) if m is not None]
    cap = min(caps) if caps else None  # none: the engine's own limit (its context less the prompt)
    if cap is not None and max_model_len is not None:
        cap = min(cap, max_model_len)
    holder = budgets.Holder(trajectory_id, attempt, row.run_id, row.campaign_id)
    request = GenerationRequest(row.messages, cfg.model, cap, cfg.temperature, cfg.top_p, row.sampling_seed)
    claim = Claim(holder, request, base, 0, row.failed_attempts)
    return Claimable(claim, row.free_grant, row.held, row.unbudgeted)


def _want(claim: Claim, block: int) -> int:
    """The attempt's first block: a block, or what its max_tokens leaves after its checkpoint."""
    cap = claim.request.max_tokens
    return block_size(0, None if cap is None else cap - claim.checkpoint.tokens, block)


def _grant_unbudgeted(store: Store, rows: list[Claimable | None], block: int, grant: int) -> set[int]:
    """In the claim's transaction, a grant to each run of a campaign without a budget whose free grant,
    as the claim read it, falls short of its claims' first blocks (a run's first round, mostly): such a
    grant writes the run's row alone, which the claim's blocks lock next anyway. Returns the runs asked.
    (A budget set since the claim read it makes the grant lock the campaign's row in this transaction,
    after the trajectories and the run, in the order every transaction takes them.)"""
    asking = [r for r in rows if r is not None and r.unbudgeted and r.held == 0]
    free = {r.claim.holder.run_id: r.free_grant for r in asking}
    needs = _needs([(r.claim, want) for r in asking if (want := _want(r.claim, block)) > 0])
    short = {key: need for key, need in needs.items() if free[key[0]] < need}
    for (run_id, campaign_id), need in short.items():
        budgets.grant_ahead(store, run_id, campaign_id, need, grant)
    return {run_id for run_id, _ in short}


def _needs(asks: list[tuple[Claim, int]]) -> dict[tuple[int, int], int]:
    """The tokens the claims' first blocks ask of each (run, campaign), summed."""
    needs: dict[tuple[int, int], int] = {}
    for claim, want in asks:
        key = (claim.holder.run_id, claim.holder.campaign_id)
        needs[key] = needs.get(key, 0) + want
    return needs


def _first_blocks(
    store: Store, rows: list[Claimable | None], block: int, granted: set[int]
) -> list[Claim | None]:
    """Each claim's first block from its run's free grant, in the claim's transaction and one statement
    (0: too little). A run whose free grant the claim read as spent is not asked, unless the attempt
    holds a block already (a re-claim finds it) or the run was granted in this transaction: its claims
    take a grant after this transaction, as a refused block would."""
    asks = [
        (row.claim.holder, want)
        for row in rows
        if row is not None
        and (want := _want(row.claim, block)) > 0
        and (row.free_grant > 0 or row.held > 0 or row.claim.holder.run_id in granted)
    ]
    held = budgets.reserve_first(store, asks)
    return [
        None if row is None else replace(row.claim, reserved=held.get(row.claim.trajectory_id, 0))
        for row in rows
    ]


class Writes(Protocol):
    """Where a generation's last write runs: a transaction of its own (`Database`), or the worker's
    group commit (`worker.writes.GroupCommit`), where results share one statement."""

    def run(self, fn: Callable[[Store], T]) -> T: ...

    def finish(self, result: Result) -> Finished: ...


def finish(
    db: Writes,
    claim: Claim,
    worker_id: str,
    result: GenerationResult | None,
    error: str | None,
    spent: Spent | None = None,
    max_attempts: int = 1,
) -> bool:
    """Write the outcome, fenced by attempt, and settle the attempt's tokens exactly once. A failure
    is followed by another attempt (afresh: its tokens are all waste) until `max_attempts` failed."""
    spent = spent or Spent(
        result.completion_tokens if result else 0, 0, result.prompt_tokens if result else 0
    )
    status = TrajectoryStatus.DONE if result else TrajectoryStatus.FAILED
    error = "; ".join(e for e in (error, spent.note) if e) or None
    wasted = spent.wasted if result else spent.tokens
    if result is None and after_failed_attempt(claim.failed_before, max_attempts) == "again":
        note = f"attempt {claim.failed_before + 1} of {max_attempts} failed: {error}"
        return _again(db, claim, worker_id, spent, Outcome.FAILED, note, discard=True)
    finished = db.finish(
        Result(
            claim.trajectory_id,
            claim.attempt,
            claim.holder.run_id,
            worker_id,
            status=str(status),
            content=result.content if result else None,
            reasoning=result.reasoning if result else None,
            finish=result.finish_reason if result else None,
            prompt=result.prompt_tokens if result else None,
            completion=result.completion_tokens if result else None,
            error=error,
            spent=spent.tokens,
            wasted=wasted,
            spent_prompt=spent.prompt,
            retries=spent.retries,
        )
    )
    if finished.overrun:
        _log_overrun(claim, finished.overrun)
    return finished.written


def _again(
    db: Writes, claim: Claim, worker_id: str, spent: Spent, outcome: Outcome, error: str, discard: bool
) -> bool:
    """The attempt failed and another follows: fenced off, in the ledger, its tokens settled (all waste
    when it is discarded), the trajectory pending again with the failure counted and its error shown."""
    fenced = db.run(lambda store: _to_pending(store, claim, worker_id, spent, outcome, error, True, discard))
    log.warning("trajectory %d: %s; another attempt follows", claim.trajectory_id, error)
    return fenced is not None


def _to_pending(
    store: Store,
    claim: Claim,
    worker_id: str,
    spent: Spent,
    outcome: Outcome,
    error: str,
    failure: bool,
    discard: bool = False,
    waiting: bool = False,
) -> FencedAttempt | None:
    """Fence off this attempt and start the next, pending and unpublished (the scheduler's next tick
    publishes it), settling what the worker says it spent (all of it waste when the checkpoint is
    discarded). None: the attempt no longer ran the trajectory."""
    fenced = store.fence_attempts(
        Scope(ids=[claim.trajectory_id], attempt=claim.attempt),
        [TrajectoryStatus.RUNNING],
        TrajectoryStatus.PENDING,
        outcome,
        error,
        worker=worker_id,
        spent=spent.tokens,
        wasted=spent.tokens if discard else spent.wasted,
        prompt=spent.prompt,
        failure=failure,
        discard=discard,
        waiting=waiting,
    )
    if fenced and fenced[0].overrun:
        _log_overrun(claim, fenced[0].overrun)
    return fenced[0] if fenced else None


# Why a trajectory went back, as the ledger's outcome: a drain (SIGTERM), the health gate saw the engine
# down, or this trajectory's own request failed against an engine that then did not answer /health.
# Only the last counts toward quarantine. (When an engine process dies, every stream it serves fails at
# once: a trajectory that was in flight at both deaths of a poison request is quarantined with it.)
HANDED_BACK = {
    "drained": Outcome.RETURNED,
    "engine down": Outcome.RETURNED,
    "engine lost": Outcome.ENGINE_LOST,
    "waiting for budget": Outcome.RETURNED,  # refused a block: it waits, pending, for one
}
QUARANTINE_AFTER_WORKERS = 2


def hand_back(db: Database, claim: Claim, worker_id: str, spent: Spent, reason: str) -> bool:
    """Give the trajectory back: a new attempt (fencing this one), pending and unpublished, so that the
    scheduler's next tick publishes it again; the checkpoint stays for the next attempt to continue.
    Settles this attempt's tokens once; counts nothing toward PACORE_MAX_ATTEMPTS (a preemption, not a
    failure of the request): engine deaths have their own rule, quarantine. A run whose trajectory
    coincided with engine deaths on two distinct workers is quarantined: it waits for an operator
    (`pacore quarantine lift`)."""
    outcome = HANDED_BACK[reason]
    error = "; ".join(e for e in (f"handed back: {reason}", spent.note) if e)
    with db.store() as store:
        waiting = reason == "waiting for budget"
        if (
            _to_pending(store, claim, worker_id, spent, outcome, error, failure=False, waiting=waiting)
            is None
        ):
            return False
        if outcome == Outcome.ENGINE_LOST:
            _quarantine_if_poison(store, claim)
        if waiting:  # a run with no trajectory running holds no grant that others could use
            store.return_idle_grant(claim.holder.run_id)
    return True


def _log_overrun(claim: Claim, overrun: int) -> None:
    log.error(
        "trajectory %d attempt %d took its run %d tokens past its budget: the engine generated more than "
        "the max_tokens it was asked for",
        claim.trajectory_id,
        claim.attempt,
        overrun,
    )


def _quarantine_if_poison(store: Store, claim: Claim) -> None:
    workers = store.engine_lost_workers(claim.trajectory_id, claim.holder.run_id)
    if workers >= QUARANTINE_AFTER_WORKERS:
        reason = f"trajectory {claim.trajectory_id} coincided with engine deaths on {workers} workers"
        store.quarantine_run(claim.holder.run_id, reason)
        log.error(
            "run %d quarantined: trajectory %d took down %d engines",
            claim.holder.run_id,
            claim.trajectory_id,
            workers,
        )
