"""The fenced writes of a generation: claim by (id, attempt), then write the result with the same guard.

A message for a row that is done, or whose attempt is stale, finds nothing to claim and exits; a late
duplicate can never overwrite a result (ARCHITECTURE.md §3 rule 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from pacore.core.campaign import CampaignConfig
from pacore.db import Database
from worker.engine import GenerationRequest, GenerationResult


@dataclass(frozen=True)
class Claim:
    trajectory_id: int
    attempt: int
    run_id: int
    campaign_id: int
    request: GenerationRequest


def claim(db: Database, trajectory_id: int, attempt: int, worker_id: str, lease_seconds: int) -> Claim | None:
    with db.session() as session:
        row = session.execute(
            text(
                "UPDATE trajectory t SET status = 'running', worker_id = :worker, started_at = now(), "
                "lease_until = now() + make_interval(secs => :lease) "
                "FROM round r JOIN run ON run.id = r.run_id JOIN campaign c ON c.id = run.campaign_id "
                "WHERE t.id = :id AND t.attempt = :attempt AND t.status = 'pending' AND r.id = t.round_id "
                "AND c.status = 'active' "
                "RETURNING t.sampling_seed, r.input_messages, c.config, run.id, c.id"
            ),
            {"id": trajectory_id, "attempt": attempt, "worker": worker_id, "lease": lease_seconds},
        ).first()
    if row is None:
        return None
    seed, messages, config, run_id, campaign_id = row
    cfg = CampaignConfig.model_validate(config)
    request = GenerationRequest(messages, cfg.model, cfg.max_tokens, cfg.temperature, cfg.top_p, seed)
    return Claim(trajectory_id, attempt, run_id, campaign_id, request)


def finish(
    db: Database, claim: Claim, worker_id: str, result: GenerationResult | None, error: str | None
) -> bool:
    """Write the outcome, fenced by attempt, and settle tokens exactly once through the attempt ledger."""
    values: dict[str, Any] = {
        "id": claim.trajectory_id,
        "attempt": claim.attempt,
        "worker": worker_id,
        "status": "done" if result else "failed",
        "content": result.content if result else None,
        "reasoning": result.reasoning if result else None,
        "finish": result.finish_reason if result else None,
        "prompt": result.prompt_tokens if result else 0,
        "completion": result.completion_tokens if result else 0,
        "error": error,
    }
    with db.session() as session:
        written = session.execute(
            text(
                "UPDATE trajectory SET status = :status, content = :content, reasoning = :reasoning, "
                "finish_reason = :finish, prompt_tokens = :prompt, completion_tokens = :completion, error = :error, "
                "finished_at = now(), lease_until = NULL WHERE id = :id AND attempt = :attempt AND status = 'running' "
                "RETURNING started_at"
            ),
            values,
        ).first()
        if written is None:
            return False
        settled = session.execute(
            text(
                "INSERT INTO attempt (trajectory_id, attempt, worker_id, outcome, prompt_tokens, completion_tokens, "
                "error, started_at) VALUES (:id, :attempt, :worker, :status, :prompt, :completion, :error, :started) "
                "ON CONFLICT (trajectory_id, attempt) DO NOTHING RETURNING id"
            ),
            {**values, "started": written[0]},
        ).first()
        if settled is not None:
            _add_tokens(session, claim, values["prompt"], values["completion"])
    return True


def _add_tokens(session: Any, claim: Claim, prompt: int, completion: int) -> None:
    for table, row_id in (("run", claim.run_id), ("campaign", claim.campaign_id)):
        session.execute(
            text(
                f"UPDATE {table} SET tokens_used = tokens_used + :completion, "
                "prompt_tokens = prompt_tokens + :prompt WHERE id = :id"
            ),
            {"completion": completion, "prompt": prompt, "id": row_id},
        )
