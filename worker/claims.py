"""The fenced writes of a generation: claim by (id, attempt), then write the result with the same guard.

A message for a row that is done, or whose attempt is stale, finds nothing to claim and exits; a late
duplicate can never overwrite a result (ARCHITECTURE.md §3 rule 1). Settlement of the attempt's tokens
happens in the same transaction as the result, once, through the attempt ledger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from pacore import tokens
from pacore.core.campaign import CampaignConfig
from pacore.db import Database
from worker import checkpoint
from worker.checkpoint import Checkpoint
from worker.engine import GenerationRequest, GenerationResult

log = logging.getLogger("pacore.worker")


@dataclass(frozen=True)
class Claim:
    holder: tokens.Holder
    request: GenerationRequest
    checkpoint: Checkpoint = Checkpoint()  # what earlier attempts streamed, to continue

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


def claim(db: Database, trajectory_id: int, attempt: int, worker_id: str, lease_seconds: int) -> Claim | None:
    with db.session() as session:
        row = session.execute(
            text(
                "UPDATE trajectory t SET status = 'running', worker_id = :worker, started_at = now(), "
                "lease_until = now() + make_interval(secs => :lease) "
                "FROM round r JOIN run ON run.id = r.run_id JOIN campaign c ON c.id = run.campaign_id "
                "WHERE t.id = :id AND t.attempt = :attempt AND r.id = t.round_id "
                # pending; or already ours: a claim whose commit went through but whose answer was lost
                # (the worker runs one generation per trajectory at a time, so nothing else of ours)
                "AND (t.status = 'pending' OR (t.status = 'running' AND t.worker_id = :worker)) "
                "AND c.status = 'active' AND run.status = 'running' "
                "RETURNING t.sampling_seed, r.input_messages, r.max_tokens, c.config, run.id, c.id"
            ),
            {"id": trajectory_id, "attempt": attempt, "worker": worker_id, "lease": lease_seconds},
        ).first()
        if row is None:
            return None
        base = checkpoint.load(session, trajectory_id, attempt)
    seed, messages, round_max, config, run_id, campaign_id = row
    cfg = CampaignConfig.model_validate(config)
    caps = [m for m in (cfg.max_tokens, round_max) if m is not None]
    request = GenerationRequest(
        messages, cfg.model, min(caps) if caps else None, cfg.temperature, cfg.top_p, seed
    )
    return Claim(tokens.Holder(trajectory_id, attempt, run_id, campaign_id), request, base)


def finish(
    db: Database,
    claim: Claim,
    worker_id: str,
    result: GenerationResult | None,
    error: str | None,
    spent: Spent | None = None,
    grant: int = 0,
) -> bool:
    """Write the outcome, fenced by attempt, and settle the attempt's tokens exactly once."""
    spent = spent or Spent(
        result.completion_tokens if result else 0, 0, result.prompt_tokens if result else 0
    )
    values = {
        "id": claim.trajectory_id,
        "attempt": claim.attempt,
        "worker": worker_id,
        "status": "done" if result else "failed",
        "content": result.content if result else None,
        "reasoning": result.reasoning if result else None,
        "finish": result.finish_reason if result else None,
        "prompt": result.prompt_tokens if result else None,
        "completion": result.completion_tokens if result else None,
        "error": "; ".join(e for e in (error, spent.note) if e) or None,
    }
    with db.session() as session:
        written = session.execute(
            text(
                "WITH old AS (SELECT id, tokens_reserved FROM trajectory WHERE id = :id FOR NO KEY UPDATE) "
                "UPDATE trajectory t SET status = :status, content = :content, reasoning = :reasoning, "
                "finish_reason = :finish, prompt_tokens = :prompt, completion_tokens = :completion, error = :error, "
                # completion order, which the official ordering starts from (ARCHITECTURE.md §1 item 4)
                "finish_seq = nextval('trajectory_finish_seq'), "
                "finished_at = now(), lease_until = NULL, tokens_reserved = 0, tokens_streamed = 0 FROM old "
                "WHERE t.id = old.id AND t.attempt = :attempt AND t.status = 'running' "
                "RETURNING t.started_at, old.tokens_reserved"
            ),
            values,
        ).first()
        if written is None:
            return False
        started, reserved = written
        checkpoint.discard(session, claim.trajectory_id, claim.attempt)  # the result supersedes it
        settled = session.execute(
            text(
                "INSERT INTO attempt (trajectory_id, attempt, worker_id, outcome, prompt_tokens, completion_tokens, "
                "wasted_tokens, retries, error, started_at) VALUES (:id, :attempt, :worker, :status, :sprompt, "
                ":spent, :wasted, :retries, :error, :started) ON CONFLICT (trajectory_id, attempt) DO NOTHING RETURNING id"
            ),
            {
                **values,
                "sprompt": spent.prompt,
                "spent": spent.tokens,
                "wasted": spent.wasted if result else spent.tokens,
                "retries": spent.retries,
                "started": started,
            },
        ).first()
        if settled is not None:
            wasted = spent.wasted if result else spent.tokens
            overrun = tokens.settle(
                session, claim.holder, reserved, spent.tokens, wasted, spent.prompt, grant
            )
            if overrun:
                log.error(
                    "trajectory %d attempt %d used %d tokens past its budget (the engine sent more than "
                    "PACORE_TOKEN_CHUNK_SLACK tokens in one chunk)",
                    claim.trajectory_id,
                    claim.attempt,
                    overrun,
                )
    return True


# Why a trajectory went back, as the ledger's outcome: a drain (SIGTERM), the health gate saw the engine
# down, or this trajectory's own request failed against an engine that then did not answer /health.
# Only the last counts toward quarantine. (When an engine process dies, every stream it serves fails at
# once: a trajectory that was in flight at both deaths of a poison request is quarantined with it.)
HANDED_BACK = {"drained": "returned", "engine down": "returned", "engine lost": "engine_lost"}
QUARANTINE_AFTER_WORKERS = 2


def hand_back(db: Database, claim: Claim, worker_id: str, spent: Spent, reason: str, grant: int = 0) -> bool:
    """Give the trajectory back: a new attempt (fencing this one), pending and unpublished, so that the
    scheduler's next tick publishes it again; the checkpoint stays for the next attempt to continue.
    Settles this attempt's tokens once; counts nothing against the trajectory (a preemption, not a
    failure). A run whose trajectory coincided with engine deaths on two distinct workers is
    quarantined: it waits for an operator (`pacore quarantine lift`)."""
    outcome = HANDED_BACK[reason]
    with db.session() as session:
        moved = session.execute(
            text(
                "WITH old AS (SELECT id, tokens_reserved FROM trajectory WHERE id = :id FOR NO KEY UPDATE) "
                "UPDATE trajectory t SET status = 'pending', attempt = t.attempt + 1, worker_id = NULL, "
                "lease_until = NULL, published_at = NULL, tokens_reserved = 0, tokens_streamed = 0 FROM old "
                "WHERE t.id = old.id AND t.attempt = :attempt AND t.status = 'running' "
                "RETURNING old.tokens_reserved, t.started_at"
            ),
            {"id": claim.trajectory_id, "attempt": claim.attempt},
        ).first()
        if moved is None:
            return False
        reserved, started = moved
        session.execute(
            text(
                "INSERT INTO attempt (trajectory_id, attempt, worker_id, outcome, preempted, completion_tokens, "
                "wasted_tokens, error, started_at) VALUES (:id, :attempt, :worker, :outcome, true, :spent, :wasted, "
                ":error, :started)"
            ),
            {
                "id": claim.trajectory_id,
                "attempt": claim.attempt,
                "worker": worker_id,
                "outcome": outcome,
                "spent": spent.tokens,
                "wasted": spent.wasted,
                "error": "; ".join(e for e in (f"handed back: {reason}", spent.note) if e),
                "started": started,
            },
        )
        tokens.settle(session, claim.holder, reserved, spent.tokens, spent.wasted, spent.prompt, grant)
        if outcome == "engine_lost":
            _quarantine_if_poison(session, claim)
    return True


def _quarantine_if_poison(session: Session, claim: Claim) -> None:
    workers = session.execute(
        text(
            "SELECT count(DISTINCT a.worker_id) FROM attempt a JOIN run ON run.id = :run "
            "WHERE a.trajectory_id = :id AND a.outcome = 'engine_lost' "
            "AND a.finished_at > coalesce(run.quarantine_lifted_at, '-infinity')"
        ),
        {"id": claim.trajectory_id, "run": claim.holder.run_id},
    ).scalar_one()
    if workers >= QUARANTINE_AFTER_WORKERS:
        session.execute(
            text(
                "UPDATE run SET status = 'quarantined', reason = :reason WHERE id = :run AND status = 'running'"
            ),
            {
                "run": claim.holder.run_id,
                "reason": f"trajectory {claim.trajectory_id} coincided with engine deaths on {workers} workers",
            },
        )
        log.error(
            "run %d quarantined: trajectory %d took down %d engines",
            claim.holder.run_id,
            claim.trajectory_id,
            workers,
        )
