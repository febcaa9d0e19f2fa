"""One attempt at a trajectory: stream from the engine (continuing the checkpoint an earlier attempt
left, if any) in segments that never ask for more than the attempt holds (`pacore.core.segments`),
reserve the next block as the stream nears the end of what is held, checkpoint the text and its token
ids, retry transient engine faults with tenacity, give the trajectory back when the worker drains or its
engine dies, and account for every token the attempt cost."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from tenacity import (
    RetryCallState,
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
from pacore.core.segments import after_segment, segment_max_tokens, segment_seed
from pacore.logs import ids
from pacore.settings import Settings
from pacore.store import budgets
from pacore.store.database import Database
from worker.checkpoint import Recorder
from worker.claims import Claim, Spent
from worker.engine import CannotContinue, EngineError, GenerationResult, HandBack
from worker.node import Node

log = logging.getLogger("pacore.worker")

# A draining generation keeps going only if, at its observed rate, it ends this long before the grace
# (one whose end is not known: until this long before it).
DRAIN_MARGIN_SECONDS = 3.0
# A stream that sent no line for this long while it should stop is cut by the watchdog (a flowing one
# stops itself at its next line).
SILENT_SECONDS = 1.0


class BudgetGuard:
    """Keeps the attempt's reservation ahead of its stream.

    Every request asks the engine for at most what the attempt holds and has not spent (`unspent`), so
    the engine stops itself at the budget whatever its chunk size. The guard reserves the next block
    when the stream comes within a quarter of a block of what is held (never past `limit`, the most this
    attempt may spend), so that the next segment starts without waiting on the database; once refused,
    it asks no more in this attempt. An engine that sends more than it was asked for is stopped.
    """

    def __init__(self, db: Database, claim: Claim, settings: Settings) -> None:
        self.db, self.claim, self.settings = db, claim, settings
        self.limit: int | None = None
        self.reserved = claim.reserved  # the first block came with the claim
        self.refused = False

    def ahead(self, spent: int) -> None:
        block = self.settings.token_block
        while not self.refused and needs_block(spent, self.reserved, block):
            want = block_size(self.reserved, self.limit, block)
            if want == 0:
                break
            got = self.db.through_outages(self._reserve, want, spent, 1)
            self.reserved += got
            self.refused = got == 0

    def may_reserve(self, spent: int) -> bool:
        """Whether `allow(spent)` may ask the database for a block (else it only compares numbers)."""
        return not self.refused and needs_block(spent, self.reserved, self.settings.token_block)

    def unspent(self, spent: int) -> int:
        """What the next request may ask for (reserving ahead first)."""
        self.ahead(spent)
        return max(0, self.reserved - spent)

    def hold_all(self, spent: int, total: int) -> bool:
        """Hold `total` tokens past `spent` at once (an engine that cannot continue a segment needs the
        whole of it up front); False when the budget cannot give all of it."""
        want = spent + total - self.reserved
        if want > 0:
            got = self.db.through_outages(self._reserve, want, spent, want)
            self.reserved += got
        return self.reserved - spent >= total

    def allow(self, spent: int) -> bool:
        self.ahead(spent)
        return spent <= self.reserved

    def _reserve(self, want: int, spent: int, minimum: int) -> int:
        with self.db.store() as store:
            return budgets.reserve(
                store,
                self.claim.holder,
                want,
                spent,
                self.settings.token_grant,
                held=self.reserved,
                minimum=minimum,
            )


class Refused(Exception):
    """The budget cannot hold what this attempt needs before it may start: the attempt fails with why."""


def _cannot_hold_whole(left: int | None) -> str:
    why = "the engine cannot continue a trajectory in segments (it has no raw completions or tokenize API)"
    if left is None:
        return f"{why}, and the trajectory has no max_tokens to reserve up front: set --max-tokens"
    return f"{why}, so its whole max_tokens ({left}) must be reserved before it starts: the budget cannot hold it"


@dataclass(frozen=True)
class Attempted:
    """How the attempt ended: a result, an error (failed), or handed back (`handed_back` says why)."""

    result: GenerationResult | None
    error: str | None
    spent: Spent
    handed_back: str | None = None
    definitive: bool = False  # an error the engine would give any attempt (a 4xx no retry fixes)


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
        self.segments = 0  # requests that ended on a segment boundary and were continued
        self.try_streamed = 0  # tokens the current request streamed, as the guard saw them
        self.try_raw = 0  # characters of its raw text recorded
        self.try_ids = 0  # token ids of it recorded
        self.try_started = 0.0
        self.try_ask: int | None = None  # the max_tokens the current request asked for
        self.try_lines = -1  # lines the guard saw of it (the call before it was sent is line 0)
        self.prompt_ids: tuple[int, ...] | None = None  # the rendered prompt's ids, once the engine said
        self.prompt_spent = 0  # prompt tokens of every request that completed (continuations included)
        self.first_prompt: int | None = None  # the problem's own prompt tokens
        self.whole = False  # the engine cannot continue a segment: hold the whole max_tokens up front
        # The watchdog's view: the thread that generates, whether a request is open, when its last line
        # and its last token came, and why the watchdog cut it (how: "hand back" or "timeout").
        self.thread = threading.get_ident()
        self.requesting = False
        self.last_line = self.last_token = 0.0
        self.cut: tuple[str, str] | None = None
        self.cut_lock = threading.Lock()
        self.primed: threading.Event | None = None  # set at the first token (see `generate`)

    def where(self) -> dict[str, object]:
        h = self.claim.holder
        return ids(
            campaign_id=h.campaign_id, run_id=h.run_id, trajectory_id=h.trajectory_id, attempt=h.attempt
        )

    def remaining(self) -> int | None:
        return None if self.cap is None else self.cap - self.recorder.tokens

    def guard(self, raw: str, streamed: int, ids: list[int] | None) -> bool:
        """Per line: record the text, hand back if the process drains or the engine died, then budget."""
        self.last_line = time.monotonic()
        self.try_lines += 1  # the engine asks before it sends the request: that call is line 0
        if streamed > self.try_streamed:
            self.last_token = self.last_line
            if self.primed is not None:
                self.primed.set()
        self.recorder.add(raw, streamed - self.try_streamed, ids)
        metrics.GENERATED_TOKENS.inc(streamed - self.try_streamed)
        self.try_streamed = streamed
        self.try_raw += len(raw)
        self.try_ids += len(ids or ())
        if reason := self._hand_back_reason():
            raise HandBack(reason)
        return self.budget.allow(self.recorder.spent)

    def may_block(self, streamed: int) -> bool:
        """Whether the guard's call at `streamed` tokens may wait on the database (it reserves a block)."""
        return self.budget.may_reserve(self.recorder.spent + max(0, streamed - self.try_streamed))

    def _hand_back_reason(self) -> str | None:
        if self.node.is_superseded(self.claim.trajectory_id):  # cancelled, or re-driven elsewhere
            return "superseded"
        if self.node.engine_lost.is_set():  # noticed by the health gate; this stream itself may still flow
            return "engine down"
        if self.node.draining.is_set() and not self._keeps_going_while_draining():
            return "drained"
        return None

    def overdue(self) -> tuple[str, str] | None:
        """The watchdog's question, for a stream that sends no line at all (a hung engine), where the
        guard never runs: hand it back (cancelled, drained, engine down) or time it out (no first token
        within PACORE_FIRST_TOKEN_TIMEOUT, no token for PACORE_IDLE_TIMEOUT)."""
        now = time.monotonic()
        if not self.requesting or now - self.last_line < SILENT_SECONDS:
            return None
        if reason := self._hand_back_reason():
            return "hand back", reason
        if self.try_streamed:
            waited, limit, what = now - self.last_token, self.settings.idle_timeout, "new token"
        else:
            waited, limit, what = now - self.try_started, self.settings.first_token_timeout, "first token"
        if waited > limit:
            return "timeout", f"no {what} for {waited:.0f} s (the stream went silent)"
        return None

    def cut_if_overdue(self, cut: Callable[[int], bool]) -> None:
        """Called by the watchdog thread: cut this generation's blocked read if it is overdue."""
        why = self.overdue()
        if why is None:
            return
        with self.cut_lock:
            self.cut = why
            if not cut(self.thread):  # not blocked in a read just now: its next line will do
                self.cut = None

    def _keeps_going_while_draining(self) -> bool:
        """A draining worker's generation goes on while it can end within the grace: at its observed rate
        when what it may still generate is known (capped), else until the grace is about to run out (no
        cap, or no token yet this try: it may well end sooner, and a long grace, as a scale-in gives,
        lets it). One that cannot end in time hands back at once."""
        seconds_left = self.node.seconds_left() - DRAIN_MARGIN_SECONDS
        left = self.remaining()
        elapsed = time.monotonic() - self.try_started
        if left is None or self.try_streamed == 0 or elapsed <= 0:
            return seconds_left > 0
        return left / (self.try_streamed / elapsed) < seconds_left

    def one_try(self) -> GenerationResult:
        """One try: requests, segment after segment, until the trajectory ends (or the budget does)."""
        self.tries += 1
        while True:
            left = self.remaining()
            if left is not None and left <= 0:
                return self._so_far("length")  # streamed right up to max_tokens (maybe an earlier attempt)
            self.budget.limit = None if left is None else self.recorder.spent + left
            if self.whole and (left is None or not self.budget.hold_all(self.recorder.spent, left)):
                raise Refused(_cannot_hold_whole(left))
            ask = segment_max_tokens(left, self.budget.unspent(self.recorder.spent))
            if ask == 0:  # refused a block: stop at this boundary and wait, pending, for one
                raise HandBack("waiting for budget")
            # Held past the model's context, with no cap of its own: the context is the limit, which the
            # engine applies itself (an explicit max_tokens over max_model_len is refused outright).
            whole_context = (
                left is None and self.node.max_model_len is not None and ask >= self.node.max_model_len
            )
            result = self._request(None if whole_context else ask)
            if result is None:  # could not continue: started afresh, the whole max_tokens held first
                continue
            context_bound = result.context_bound or whole_context
            if after_segment(result.finish_reason, ask, left, context_bound) == "done":
                return result
            self.segments += 1

    def _request(self, ask: int | None) -> GenerationResult | None:
        """One request of at most `ask` tokens (None: as many as the model's context leaves), continuing
        everything generated so far."""
        request = replace(
            self.claim.request,
            prefix=self.recorder.text,
            prefix_ids=self.recorder.ids,
            prompt_ids=self.prompt_ids,
            max_tokens=ask,
            seed=segment_seed(self.claim.request.seed, self.recorder.tokens),
        )
        self.try_streamed, self.try_raw, self.try_ids, self.try_ask, self.try_lines = 0, 0, 0, ask, -1
        self.try_started = self.last_line = self.last_token = time.monotonic()
        self.requesting = True
        try:
            result = self.node.engine.generate(request, self.guard, self.may_block)
        except CannotContinue as exc:
            self.db.through_outages(self.node.checkpoints.restart, self.db, self.recorder)
            self._warn(f"could not continue the checkpoint ({exc}): started afresh")
            self.whole = True
            return None
        except EngineError as exc:
            raise self._engine_failed(exc) from exc
        except HandBack:  # the guard stopped the request (drain, cancel, engine down)
            if self.try_lines > 0:  # it had been sent and was streaming: the engine may be ahead of it
                self._charge_unseen()
            raise
        finally:
            self.requesting = False
        self._record_tail(result)
        self.prompt_ids = result.prompt_ids or self.prompt_ids
        self.prompt_spent += result.prompt_tokens
        if self.first_prompt is None:
            self.first_prompt = result.prompt_tokens
        return result

    def _engine_failed(self, exc: EngineError) -> Exception:
        """What a failed request means: a stream the watchdog cut hands back or times out, as it said; a
        dead engine hands back; any other error is the engine's, to retry or fail on."""
        self.prompt_ids = self.prompt_ids or exc.prompt_ids
        with self.cut_lock:
            cut, self.cut = self.cut, None
        if cut is not None and cut[0] == "hand back":
            self._charge_unseen()
            return HandBack(cut[1])
        if cut is not None:
            exc = EngineError("timeout", cut[1], streamed=exc.streamed)
        metrics.ENGINE_ERRORS.labels(exc.kind).inc()
        if exc.kind in ("malformed", "timeout"):
            self._charge_unseen()
        if not self.node.engine.health():
            # Refused: the engine was already gone. Broken mid-request: this request was there when it
            # died, which counts toward quarantine. The attempt's record keeps the engine's words.
            self._warn(f"try {self.tries} failed, the engine then did not answer /health: {exc}")
            return HandBack("engine down" if exc.kind == "connect" else "engine lost")
        return exc

    def _charge_unseen(self) -> None:
        """This client closed a request the engine was serving (malformed output, a timeout, a hand-back
        mid-stream): the engine may have generated past what arrived, unseen. That is charged as waste,
        bounded by what the request asked for and the attempt holds unspent, so that used never falls
        below the engine's real spend (issue #13 item 5). A stream the engine itself ended or broke (the
        server closed it, or died) is not: that engine stopped."""
        unspent = max(0, self.budget.reserved - self.recorder.spent)
        asked = unspent if self.try_ask is None else max(0, self.try_ask - self.try_streamed)
        unseen = min(unspent, asked)
        if unseen:
            self.recorder.charge(unseen)
            self.notes.append(f"charged {unseen} unseen tokens of a request it closed")

    def _record_tail(self, result: GenerationResult) -> None:
        """What came with the finish reason (the guard sees the stream up to it): the rest of the
        request's raw text and ids, and its last tokens (the end-of-sequence token has no text)."""
        tokens = max(0, result.completion_tokens - self.try_streamed)
        ids = None if result.token_ids is None else list(result.token_ids[self.try_ids :])
        self.recorder.add(result.raw[self.try_raw :], tokens, ids)
        metrics.GENERATED_TOKENS.inc(tokens)
        self.try_streamed = result.completion_tokens

    def _so_far(self, finish_reason: str) -> GenerationResult:
        reasoning, content = parse_output(self.recorder.text)
        return GenerationResult(content, reasoning, finish_reason, 0, 0)

    def run(self) -> Attempted:
        self.node.checkpoints.open(self.recorder)
        self.node.watch(self)
        try:
            return self._run()
        finally:
            self.node.unwatch(self)
            self.node.checkpoints.close(self.recorder)

    def _run(self) -> Attempted:
        settings = self.settings
        retrying = Retrying(
            stop=stop_after_attempt(settings.engine_retries)
            | stop_after_delay(settings.engine_retry_deadline),
            # jittered by up to the first backoff (1 s at the default), so that a short one stays short
            wait=wait_exponential_jitter(
                multiplier=settings.engine_retry_initial,
                max=60,
                jitter=min(1.0, settings.engine_retry_initial),
            ),
            retry=retry_if_exception(_transient),
            reraise=True,
            before_sleep=self._note_retry,
        )
        if self.recorder.base.tokens:
            self.notes.append(f"continued a checkpoint of {self.recorder.base.tokens} tokens")
        try:
            result = self._retrying(retrying)
        except HandBack as stop:
            self.db.through_outages(self.node.checkpoints.flush, self.db, self.recorder)
            return Attempted(None, None, self._spent(), handed_back=stop.reason)
        except EngineError as exc:
            definitive = retry_decision(exc.kind, exc.status, str(exc)) == "fail"
            return Attempted(None, f"{exc} (after {self.tries} tries)", self._spent(), definitive=definitive)
        except Refused as exc:
            return Attempted(None, str(exc), self._spent())
        if self.segments:
            self.notes.append(f"generated in {self.segments + 1} segments")
        prompt = self.first_prompt if self.first_prompt is not None else result.prompt_tokens
        result = replace(result, completion_tokens=self.recorder.tokens, prompt_tokens=prompt)
        return Attempted(result, None, self._spent())

    def _warn(self, note: str) -> None:
        """A note for the attempt's record, logged as a warning."""
        self.notes.append(note)
        log.warning("trajectory %d: %s", self.claim.trajectory_id, note, extra=self.where())

    def _note_retry(self, state: RetryCallState) -> None:
        """A try failed and is retried: the attempt's record keeps the engine's words."""
        error = str(state.outcome.exception() if state.outcome else None)
        last = self.notes[-1] if self.notes else ""
        if same := re.fullmatch(rf"(?:try|tries) (\d+)(?:-\d+)? failed, retried: {re.escape(error)}", last):
            self.notes[-1] = f"tries {same[1]}-{state.attempt_number} failed, retried: {error}"  # same words
        else:
            self.notes.append(f"try {state.attempt_number} failed, retried: {error}")
        log.warning("trajectory %d: %s", self.claim.trajectory_id, self.notes[-1], extra=self.where())

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
            self._warn(f"max_tokens lowered from {self.remaining()} to {fit} after a context-length error")
            self.cap = self.recorder.tokens + fit
            return retrying(self.one_try)

    def _spent(self) -> Spent:
        """The prompt counts every completed request's (continuations re-read their prefix, mostly from
        the engine's prefix cache), apart from the generated tokens."""
        note = "; ".join(self.notes) or None
        return Spent(
            self.recorder.spent, self.recorder.wasted, self.prompt_spent, max(0, self.tries - 1), note
        )


def generate(
    node: Node, db: Database, claim: Claim, settings: Settings, primed: threading.Event | None = None
) -> Attempted:
    """Run the attempt. Never raises for engine failures: they come back as an error. `primed` is set
    once the engine sent its first token (its prompt is prefilled, so in its prefix cache) or the
    attempt ended."""
    generation = Generation(node, db, claim, settings)
    generation.primed = primed
    try:
        return generation.run()
    finally:
        if primed is not None:
            primed.set()
