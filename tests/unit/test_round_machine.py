"""The round state machine end to end, table by table, over an in-memory store: what advancing a
finished round writes (the next round, or the run's end) for each kind of round. The writer's SQL,
fencing, budgets and the ledger are tested on real PostgreSQL (tests/integration); this is the decision
and its application, fast."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from pacore.core.budget import CampaignTokens, RunTokens
from pacore.core.prompts import render_synthesis
from pacore.core.vocabulary import CampaignStatus
from pacore.settings import Settings
from pacore.store.counters import PlanCounters
from pacore.store.endings import EndingQueries, Progress
from pacore.store.rounds import CreatedRound, OutcomeRow, WonRound
from scheduler.rounds import advance_round

PROBLEM = [{"role": "user", "content": "What is 2+2?"}]


@dataclass
class MemoryStore:
    """What `advance_round` reads and writes, in memory (the methods of `Store` it calls)."""

    won: WonRound | None
    outcomes: list[OutcomeRow]
    run_row: RunTokens = field(default_factory=lambda: RunTokens(None))
    campaign_row: CampaignTokens = field(default_factory=lambda: CampaignTokens(None))
    campaign_status: str = CampaignStatus.ACTIVE
    other_unfinished_runs: int = 0  # the campaign's runs still going besides this one
    written: dict[str, Any] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def win_round(self, round_id: int) -> WonRound | None:
        if self.won is None:
            return None
        counters = PlanCounters(self.run_row, self.campaign_row, 100.0)
        return replace(self.won, outcomes=self.outcomes, counters=counters)

    def record_round_decision(
        self,
        round_id: int,
        messages: dict[int, str | None],
        order: list[int],
        finished: list[int],
        reason: str,
    ) -> None:
        self.written["messages"] = messages
        self.written["decision"] = (order, finished, reason)

    def fail_round(self, round_id: int) -> None:
        self.written["round_failed"] = True

    def lock_run(self, run_id: int) -> bool:
        return "run" not in self.written

    def run_tokens(self, run_id: int) -> tuple[RunTokens, CampaignTokens]:
        return self.run_row, self.campaign_row

    def end_runs(
        self,
        status: str,
        reason: str,
        *,
        ids: list[int] | None = None,
        campaign: int | None = None,
        message: str | None = None,
        answer: str | None = None,
    ) -> list[int]:
        self.written["run"] = (status, reason, message, answer)
        return ids or []

    def campaign_progress(self, campaign_id: int) -> Progress:
        return Progress(self.campaign_status, self.other_unfinished_runs + ("run" not in self.written))

    def finish_campaign(self, campaign_id: int, status: str) -> None:
        self.campaign_status = status

    finish_campaign_if_done = EndingQueries.finish_campaign_if_done  # the store's writer, over this memory

    def create_round(
        self,
        campaign_id: int,
        run_id: int,
        index: int,
        is_final: bool,
        max_tokens: Any,
        messages: Any,
        reason: str,
        seeds: list[Any],
    ) -> CreatedRound:
        self.rounds.append(
            {"index": index, "k": len(seeds), "final": is_final, "messages": messages, "reason": reason}
        )
        return CreatedRound(100 + index, [(1000 + i, i) for i in range(len(seeds))])


def done(index: int, content: str, tid: int | None = None) -> OutcomeRow:
    return OutcomeRow(index, "done", content, "thinking", "stop", tid if tid is not None else 10 + index)


def failed(index: int) -> OutcomeRow:
    return OutcomeRow(index, "failed", None, None, None, 10 + index)


def store_for(
    round_index: int, is_final: bool, outcomes: list[OutcomeRow], rounds: list[int], sample: int = 0
) -> MemoryStore:
    config = {"rounds": rounds, "model": "m", "seed": 42}
    return MemoryStore(
        WonRound(
            1,
            round_index,
            is_final,
            0.5,
            campaign_id=7,
            config=config,
            messages=PROBLEM,
            sample=sample,
            outcomes=[],  # the store's win_round reads them: `outcomes` below
            counters=PlanCounters(RunTokens(None), CampaignTokens(None), None),  # and these: run_row ...
        ),
        outcomes,
    )


def test_a_middle_round_creates_the_next_with_the_synthesis_prompt() -> None:
    # completed 1 then 0; lengths 2 and 6 -> by length [1, 0]; Random(42) shuffles [a, b] into [b, a]
    store = store_for(1, False, [done(1, " 4"), done(0, "\n\nfour")], rounds=[2])
    follow = advance_round(store, Settings(), round_id=5)
    assert follow is not None and follow.trajectories == [(1000, 1)] and follow.waited == 0.5
    assert store.written["messages"] == {11: " 4", 10: "\n\nfour"}
    (created,) = store.rounds
    assert (created["index"], created["k"], created["final"]) == (2, 1, True)
    expected = render_synthesis("What is 2+2?", ["\n\nfour", " 4"])
    assert created["messages"] == [{"role": "user", "content": expected}]
    assert store.written["decision"] == ([0, 1], [1, 0], "round 1: 2 of 2 trajectories gave a reference")
    assert "run" not in store.written


@pytest.mark.parametrize(
    ("outcomes", "run", "round_failed"),
    [
        (
            [done(0, " The answer is \\boxed{4}.")],
            ("done", "final round done", " The answer is \\boxed{4}.", "4"),
            False,
        ),
        ([done(0, "")], ("no_conclusion", "the final round gave no conclusion", None, None), False),
        ([failed(0)], ("failed", "the final round's trajectory failed", None, None), True),
    ],
)
def test_the_final_round_ends_the_run(outcomes, run, round_failed) -> None:
    store = store_for(2, True, outcomes, rounds=[4])
    assert advance_round(store, Settings(), round_id=5) is None
    assert store.written["run"] == run and store.written.get("round_failed", False) == round_failed
    assert store.campaign_status == CampaignStatus.DONE and store.rounds == []


def test_a_round_where_all_failed_goes_on_quoting_nothing() -> None:
    store = store_for(1, False, [failed(0), failed(1)], rounds=[2])
    assert advance_round(store, Settings(), round_id=5) is not None
    assert store.rounds[0]["messages"] == [{"role": "user", "content": render_synthesis("What is 2+2?", [])}]
    assert store.written["messages"] == {10: None, 11: None}


def test_a_pool_round_ends_its_pool_run() -> None:
    store = store_for(1, False, [done(0, " a"), failed(1), done(2, " c")], rounds=[2], sample=-1)
    assert advance_round(store, Settings(), round_id=5) is None
    assert store.written["run"] == ("done", "round-1 pool: 2 of 3 trajectories done", None, None)
    assert store.rounds == []


def test_no_room_for_a_final_round_ends_the_run_out_of_budget() -> None:
    store = store_for(1, False, [done(0, " 4"), done(1, " 5")], rounds=[2])
    store.run_row = RunTokens(limit=300, granted=300, used=290, reserved=0)  # 10 tokens left
    assert advance_round(store, Settings(), round_id=5) is None
    status, reason, *_ = store.written["run"]
    assert status == "budget_exhausted" and "10 tokens left" in reason and store.rounds == []


def test_a_round_another_caller_advanced_writes_nothing() -> None:
    store = replace(store_for(1, False, [done(0, " 4")], rounds=[2]), won=None)
    assert advance_round(store, Settings(), round_id=5) is None
    assert store.written == {} and store.rounds == []


@pytest.mark.parametrize(
    ("campaign_status", "others", "after"),
    [
        (CampaignStatus.ACTIVE, 0, CampaignStatus.DONE),  # the last run ended
        (CampaignStatus.ACTIVE, 3, CampaignStatus.ACTIVE),  # others still going
        (CampaignStatus.PAUSED, 0, CampaignStatus.PAUSED),  # decided again on resume
        (CampaignStatus.CANCELLED, 0, CampaignStatus.CANCELLED),
    ],
)
def test_the_last_run_to_end_ends_an_active_campaign(campaign_status, others, after) -> None:
    store = store_for(2, True, [done(0, " \\boxed{4}")], rounds=[4])
    store.campaign_status, store.other_unfinished_runs = campaign_status, others
    assert advance_round(store, Settings(), round_id=5) is None
    assert store.written["run"][0] == "done" and store.campaign_status == after
