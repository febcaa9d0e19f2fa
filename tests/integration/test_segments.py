"""Hard budgets by construction, on real workers against FakeEngine (issue #13 item 1): a request never
asks for more than its attempt holds; a trajectory longer than that goes on in segments, each continued
from the exact token ids the engine generated; whatever the engine's chunk size, nothing passes the
budget, and what the engine generated is what the books say."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fake_engine import TOKEN_BASE, FakeEngine
from tests.fleet import Fleet

BLOCK = 8


def campaign(fleet: Fleet, tmp_path: Path, name: str, text: str, *args: str) -> dict:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(json.dumps({"id": name, "problem": text}) + "\n")
    fleet.submit(path, "--preset", "low", *args)
    return fleet.wait_finished(name)


def sent(engine: FakeEngine, marker: str) -> list[dict]:
    return [r for r in engine.requests if marker in r["messages"][-1]["content"]]


def generated(engine: FakeEngine, marker: str) -> int:
    """Tokens the engine generated for these requests, by its own count."""
    return sum(n for text, n in engine.generated_by.items() if marker in text)


def test_a_long_trajectory_goes_on_in_segments_from_its_token_ids(
    fake_fleet, fake_engine: FakeEngine, tmp_path: Path
) -> None:
    marker = "LONG30 SEGMENTS"
    with fake_fleet(extra_env={"PACORE_TOKEN_BLOCK": str(BLOCK)}) as fleet:
        status = campaign(
            fleet,
            tmp_path,
            "segments",
            f"{marker} thirty tokens of reasoning",
            "--seed",
            "7",
            "--reproducible-sampling",
        )
        assert status["runs"] == {"total": 1, "done": 1}
        requests = sent(fake_engine, marker)
        stored = fleet.query(
            "SELECT completion_tokens, reasoning, content, sampling_seed, error FROM trajectory "
            "WHERE campaign_id = %s",
            status["id"],
        )
        ledger = fleet.query(
            "SELECT sum(a.completion_tokens), sum(a.wasted_tokens) FROM attempt a "
            "JOIN trajectory t ON t.id = a.trajectory_id WHERE t.campaign_id = %s",
            status["id"],
        )[0]
        engine_tokens = generated(fake_engine, marker)
    # 5 trajectories (K=4, then 1) of 30 reasoning tokens + 4 of conclusion + the end of sequence
    assert [r[0] for r in stored] == [35] * 5
    assert all(r[1] == "thinking" + " w" * 29 and r[2].startswith(" The answer is \\boxed{") for r in stored)
    assert all("generated in 5 segments" in r[4] for r in stored), "35 tokens in blocks of 8"
    assert max(r["max_tokens"] for r in requests) <= BLOCK, "never more than one block held unspent"
    continued = [r for r in requests if "prompt" in r]
    assert len(continued) == 5 * 4
    for r in continued:  # the rendered prompt, then the ids of everything generated so far
        cut = r["prompt"].index(0)
        assert r["prompt"][: cut + 1] == fake_engine.tokenize(r)
        assert r["prompt"][cut + 1 :] == [TOKEN_BASE + k for k in range(len(r["prompt"]) - cut - 1)]
    assert sorted(len(r["prompt"]) - r["prompt"].index(0) - 1 for r in continued) == sorted(
        [8, 16, 24, 32] * 5
    )
    first_seeds = {r["seed"] for r in requests if "prompt" not in r}
    assert first_seeds == {r[3] for r in stored}, "a first segment samples with the trajectory's seed"
    assert not first_seeds & {r["seed"] for r in continued}, "later segments get seeds of their own"
    assert ledger == (engine_tokens, 0) == (5 * 35, 0), "the books hold what the engine generated"


def test_an_engine_merging_chunks_cannot_pass_the_budget(
    fake_fleet, fake_engine: FakeEngine, tmp_path: Path
) -> None:
    """vLLM merges tokens into one chunk for a slow reader: 40 here. A guard that stopped the stream
    after the chunk that crossed the budget overran it (30,040 > 30,000 in the issue); a request that
    asks for no more than is held cannot."""
    marker = "LONG1000 MERGE40"
    with fake_fleet(extra_env={"PACORE_TOKEN_BLOCK": "64", "PACORE_MIN_TRAJECTORY_TOKENS": "8"}) as fleet:
        status = campaign(fleet, tmp_path, "merged", f"{marker} a long reasoning", "--problem-budget", "300")
        ((used, reserved, limit),) = fleet.query(
            "SELECT tokens_used, tokens_reserved, token_limit FROM run WHERE campaign_id = %s", status["id"]
        )
        engine_tokens = generated(fake_engine, marker)
        asked = [r["max_tokens"] for r in sent(fake_engine, marker)]
    assert status["runs"] in (
        {"total": 1, "budget_exhausted": 1},
        {"total": 1, "no_conclusion": 1},
        {"total": 1, "done": 1},
    )
    assert (limit, reserved) == (300, 0) and used <= 300, f"used {used} of a budget of 300"
    assert engine_tokens == used, "every token the engine generated is in the books, none more"
    assert max(asked) <= 64
