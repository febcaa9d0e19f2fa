"""One attempt at a trajectory: stream from the engine (continuing the checkpoint an earlier attempt
left, if any), reserve tokens block by block as the stream grows, checkpoint the text, retry transient
engine faults with tenacity, give the trajectory back when the worker drains or its engine dies, and
account for every token the attempt cost."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from pacore import metrics
from pacore.core.budget import block_size, needs_block
from pacore.core.compaction import parse_output
from pacore.core.retry import fitting_max_tokens, retry_decision
from pacore.logs import ids
from pacore.settings import Settings
from pacore.store import budgets
from pacore.store.database import Database
from worker.checkpoint import Recorder
from worker.claims import Claim, Spent
from worker.engine import CannotContinue, EngineError, GenerationResult, HandBack
from worker.node import Node

log = logging.getLogger("pacore.worker")

# A draining generation keeps going only if, at its observed rate, it ends this long before the grace.
DRAIN_MARGIN_SECONDS = 3.0


class BudgetGuard:
    """Says whether the stream may go on, given the tokens the attempt has spent so far.

    The stream goes on only while what is reserved covers the next chunk: up to `token_chunk_slack`
    tokens (an engine under load merges tokens into one chunk; the end-of-sequence token comes last),
    never more than `limit` (the most this attempt may spend) allows. Blocks are reserved ahead of need,
    so the stream never waits on the database while budget remains; once refused, it stops before it
    could pass its reservation.
    """

    def __init__(self, db: Database, claim: Claim, settings: Settings) -> None:
        self.db, self.claim, self.settings = db, claim, settings
        self.limit: int | None = None
        self.reserved = claim.reserved  # the first block came with the claim
        self.refused = False

    def allow(self, spent: int) -> bool:
        slack = self.settings.token_chunk_slack
        headroom = slack if self.limit is None else max(0, min(slack, self.limit - spent))
        block = self.settings.token_block
        while not self.refused and (
            needs_block(spent, self.reserved, block) or spent + headroom > self.reserved
        ):
            want = block_size(self.reserved, self.limit, block)
            if want == 0:
                break
            got = self.db.through_outages(self._reserve, want, spent)
            self.reserved += got
            self.refused = got == 0
        return spent + headroom <= self.reserved

    def _reserve(self, want: int, spent: int) -> int:
        with self.db.store() as store:
            return budgets.reserve(
                store, self.claim.holder, want, spent, self.settings.token_grant, held=self.reserved
            )


@dataclass(frozen=True)
class Attempted:
    """How the attempt ended: a result, an error (failed), or handed back (`handed_back` says why)."""

    result: GenerationResult | None
    error: str | None
    spent: Spent
    handed_back: str | None = None


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, EngineError) and retry_decision(exc.kind, exc.status, str(exc)) == "retry"


class Generation:
    def __init__(self, node: Node, db: Database, claim: Claim, settings: Settings) -> None:
        self.node, self.db, self.claim, self.settings = node, db, claim, settings
        self.recorder = Recorder(claim.trajectory_id, claim.attempt, claim.checkpoint)
        self.budget = BudgetGuard(db, claim, settings)
        self.cap = claim.request.max_tokens  # for the whole trajectory, checkpoint included
        self.notes: list[str] = []
        self.tries = 0
        self.try_streamed = 0
        self.try_started = 0.0

    def where(self) -> dict[str, object]:
        h = self.claim.holder
        return ids(
            campaign_id=h.campaign_id, run_id=h.run_id, trajectory_id=h.trajectory_id, attempt=h.attempt
        )

    def remaining(self) -> int | None:
        return None if self.cap is None else self.cap - self.recorder.tokens

    def guard(self, raw: str, streamed: int) -> bool:
        """Per chunk: record the text, hand back if the process drains or the engine died, then budget."""
        self.recorder.add(raw, streamed - self.try_streamed)
        metrics.GENERATED_TOKENS.inc(streamed - self.try_streamed)
        self.try_streamed = streamed
        if self.node.is_superseded(self.claim.trajectory_id):  # cancelled, or re-driven elsewhere
            raise HandBack("superseded")
        if self.node.engine_lost.is_set():  # noticed by the health gate; this stream itself still flows
            raise HandBack("engine down")
        if self.node.draining.is_set() and not self._finishes_before_deadline():
            raise HandBack("drained")
        return self.budget.allow(self.recorder.spent)

    def _finishes_before_deadline(self) -> bool:
        left = self.remaining()
        elapsed = time.monotonic() - self.try_started
        if left is None or self.try_streamed == 0 or elapsed <= 0:
            return False
        return left / (self.try_streamed / elapsed) < self.node.seconds_left() - DRAIN_MARGIN_SECONDS

    def one_try(self) -> GenerationResult:
        self.tries += 1
        left = self.remaining()
        if left is not None and left <= 0:  # an earlier attempt streamed right up to max_tokens
            reasoning, content = parse_output(self.recorder.text)
            return GenerationResult(content, reasoning, "length", 0, 0)
        self.budget.limit = None if left is None else self.recorder.spent + left
        request = replace(self.claim.request, prefix=self.recorder.text, max_tokens=left)
        self.try_streamed, self.try_started = 0, time.monotonic()
        try:
            return self.node.engine.generate(request, self.guard)
        except CannotContinue as exc:
            self.db.through_outages(self.node.checkpoints.restart, self.db, self.recorder)
            self.notes.append(f"could not continue the checkpoint ({exc}): started afresh")
            log.warning("trajectory %d: %s", self.claim.trajectory_id, self.notes[-1], extra=self.where())
            self.tries -= 1  # the same try, started over
            return self.one_try()
        except EngineError as exc:
            metrics.ENGINE_ERRORS.labels(exc.kind).inc()
            if not self.node.engine.health():
                # Refused: the engine was already gone. Broken mid-request: this request was there
                # when it died, which counts toward quarantine.
                raise HandBack("engine down" if exc.kind == "connect" else "engine lost") from exc
            raise

    def run(self) -> Attempted:
        self.node.checkpoints.open(self.recorder)
        try:
            return self._run()
        finally:
            self.node.checkpoints.close(self.recorder)

    def _run(self) -> Attempted:
        settings = self.settings
        retrying = Retrying(
            stop=stop_after_attempt(settings.engine_retries)
            | stop_after_delay(settings.engine_retry_deadline),
            wait=wait_exponential_jitter(multiplier=settings.engine_retry_initial, max=60),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        if self.recorder.base.tokens:
            self.notes.append(f"continued a checkpoint of {self.recorder.base.tokens} tokens")
        try:
            result = self._retrying(retrying)
        except HandBack as stop:
            self.db.through_outages(self.node.checkpoints.flush, self.db, self.recorder)
            return Attempted(None, None, self._spent(0), handed_back=stop.reason)
        except EngineError as exc:
            return Attempted(None, f"{exc} (after {self.tries} tries)", self._spent(0))
        # The last chunk (with the finish reason) is not seen by the guard.
        self.recorder.add("", result.completion_tokens - self.try_streamed)
        metrics.GENERATED_TOKENS.inc(max(0, result.completion_tokens - self.try_streamed))
        result = replace(result, completion_tokens=self.recorder.tokens)
        return Attempted(result, None, self._spent(result.prompt_tokens))

    def _retrying(self, retrying: Retrying) -> GenerationResult:
        try:
            return retrying(self.one_try)
        except EngineError as exc:
            fit = (
                fitting_max_tokens(str(exc))
                if retry_decision(exc.kind, exc.status, str(exc)) == "fit"
                else None
            )
            if fit is None:
                raise
            self.notes.append(
                f"max_tokens lowered from {self.remaining()} to {fit} after a context-length error"
            )
            log.warning("trajectory %d: %s", self.claim.trajectory_id, self.notes[-1], extra=self.where())
            self.cap = self.recorder.tokens + fit
            return retrying(self.one_try)

    def _spent(self, prompt: int) -> Spent:
        note = "; ".join(self.notes) or None
        return Spent(self.recorder.spent, self.recorder.wasted, prompt, max(0, self.tries - 1), note)


def generate(node: Node, db: Database, claim: Claim, settings: Settings) -> Attempted:
    """Run the attempt. Never raises for engine failures: they come back as an error."""
    return Generation(node, db, claim, settings).run()
