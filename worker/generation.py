"""One attempt at a trajectory: reserve tokens block by block as the stream grows, retry transient
engine faults with tenacity, and account for every token the attempt cost."""

from __future__ import annotations

import logging
from dataclasses import replace

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from pacore import tokens
from pacore.core.budget import block_size, needs_block
from pacore.core.retry import fitting_max_tokens, retry_decision
from pacore.db import Database
from pacore.settings import Settings
from worker.claims import Claim, Spent
from worker.engine import Engine, EngineError, GenerationRequest, GenerationResult

log = logging.getLogger("pacore.worker")


class BudgetGuard:
    """Called with the number of tokens streamed so far; says whether the stream may go on.

    The stream goes on only while what is reserved covers the next chunk: up to `token_chunk_slack`
    tokens (an engine under load merges tokens into one chunk; the end-of-sequence token comes last),
    never more than max_tokens allows. Blocks are reserved ahead of need, so the stream never waits on
    the database while budget remains; once refused, it stops before it could pass its reservation.
    """

    def __init__(self, db: Database, claim: Claim, settings: Settings) -> None:
        self.db, self.claim, self.settings = db, claim, settings
        self.max_tokens = claim.request.max_tokens
        self.reserved = 0
        self.spent_before = 0  # tokens streamed by earlier, failed tries of this attempt
        self.refused = False

    def headroom(self, streamed: int) -> int:
        """The most the next chunk can add."""
        slack = self.settings.token_chunk_slack
        return slack if self.max_tokens is None else max(0, min(slack, self.max_tokens - streamed))

    def __call__(self, streamed: int) -> bool:
        total = self.spent_before + streamed
        block = self.settings.token_block
        while not self.refused and (
            needs_block(total, self.reserved, block) or total + self.headroom(streamed) > self.reserved
        ):
            want = block_size(self.reserved, self.max_tokens and self.max_tokens + self.spent_before, block)
            if want == 0:
                break
            with self.db.session() as session:
                got = tokens.reserve(session, self.claim.holder, want, total, self.settings.token_grant)
            self.reserved += got
            self.refused = got == 0
        return total + self.headroom(streamed) <= self.reserved

    def next_try(self, streamed: int) -> None:
        self.spent_before += streamed


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, EngineError) and retry_decision(exc.kind, exc.status, str(exc)) == "retry"


def generate(
    engine: Engine, db: Database, claim: Claim, settings: Settings
) -> tuple[GenerationResult | None, str | None, Spent]:
    """Run the attempt. Never raises for engine failures: they come back as (None, error, spent)."""
    guard = BudgetGuard(db, claim, settings)
    request, note, tries = claim.request, None, 0

    def one_try(req: GenerationRequest) -> GenerationResult:
        nonlocal tries
        tries += 1
        try:
            return engine.generate(req, guard)
        except EngineError as exc:
            guard.next_try(exc.streamed)
            raise

    retrying = Retrying(
        stop=stop_after_attempt(settings.engine_retries) | stop_after_delay(settings.engine_retry_deadline),
        wait=wait_exponential_jitter(initial=settings.engine_retry_initial, max=60),
        retry=retry_if_exception(_transient),
        reraise=True,
    )
    try:
        try:
            result = retrying(one_try, request)
        except EngineError as exc:
            fit = (
                fitting_max_tokens(str(exc))
                if retry_decision(exc.kind, exc.status, str(exc)) == "fit"
                else None
            )
            if fit is None:
                raise
            note = f"max_tokens lowered from {request.max_tokens} to {fit} after a context-length error"
            log.warning("trajectory %d: %s", claim.trajectory_id, note)
            result = retrying(one_try, replace(request, max_tokens=fit))
    except EngineError as exc:
        spent = Spent(guard.spent_before, guard.spent_before, 0, tries - 1, note)
        return None, f"{exc} (after {tries} tries)", spent
    used = guard.spent_before + result.completion_tokens
    return result, None, Spent(used, guard.spent_before, result.prompt_tokens, tries - 1, note)
