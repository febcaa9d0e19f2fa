"""Budgets end to end on the CPU vLLM server with the uneven-length scripted model (each trajectory is
17 tokens plus a geometric number of " hmm"), small blocks (8 tokens) and grants (32): tiny budgets force
each branch of the policy, and refused blocks stop real streams."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import shared_file
from tests.fleet import Fleet, running_fleet

SMALL = {"PACORE_TOKEN_BLOCK": "8", "PACORE_TOKEN_GRANT": "32", "PACORE_MIN_TRAJECTORY_TOKENS": "8"}


@pytest.fixture(scope="module")
def fleet(postgres_admin, template_db, redis_available, vllm_server, tmp_path_factory) -> Iterator[Fleet]:
    logs = tmp_path_factory.mktemp("vllm-budget-fleet")
    with running_fleet(
        postgres_admin,
        template_db,
        redis_available,
        vllm_server.url,
        vllm_server.model,
        logs,
        concurrency=32,
        extra_env=SMALL,
    ) as fleet:
        yield fleet


def run(fleet: Fleet, tmp_path: Path, name: str, problems: int, *args: str) -> dict:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(shared_file("aime_2024.jsonl").read_text().splitlines(keepends=True)[:problems]))
    fleet.submit(path, "--name", name, *args)
    status = fleet.wait_finished(name, timeout=300)
    fleet.assert_within_budget(status)
    return status


def plans(fleet: Fleet, campaign_id: int) -> list[tuple]:
    return fleet.query(
        "SELECT r.index, r.k, r.is_final, r.max_tokens, r.plan_reason FROM round r JOIN run ON run.id = r.run_id "
        "WHERE run.campaign_id = %s ORDER BY run.id, r.index",
        campaign_id,
    )


def test_high_preset_ratio_starts_at_full_k(fleet: Fleet, tmp_path: Path) -> None:
    status = run(
        fleet, tmp_path, "high", 1, "--rounds", "32,4", "--max-tokens", "131", "--problem-budget", "2000"
    )
    assert [(i, k) for i, k, *_ in plans(fleet, status["id"])] == [(1, 32), (2, 4), (3, 1)]
    assert status["runs"] == {"total": 1, "done": 1}


def test_k_shrinks_and_refused_blocks_stop_streams(fleet: Fleet, tmp_path: Path) -> None:
    status = run(fleet, tmp_path, "shrink", 1, "--rounds", "8", "--problem-budget", "60")
    first = plans(fleet, status["id"])[0]
    assert first[1] == 6 and "K shrunk from 8 to 6 to fit 60 tokens left" in first[4]
    waited = fleet.query(
        "SELECT count(*) FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id "
        "WHERE t.campaign_id = %s AND a.error = 'handed back: waiting for budget'",
        status["id"],
    )
    assert waited[0][0] >= 1, "six trajectories of at least 17 tokens cannot all finish within 60: some wait"
    assert status["runs"] == {"total": 1, "budget_exhausted": 1}


def test_skip_to_the_final_round(fleet: Fleet, tmp_path: Path) -> None:
    # max_tokens 17 makes round 1 exactly 4 × 17 tokens; truncated trajectories are passed on whole
    status = run(
        fleet,
        tmp_path,
        "skip",
        1,
        "--rounds",
        "4,4",
        "--max-tokens",
        "17",
        "--pass-truncated",
        "--problem-budget",
        "100",
    )
    first, second = plans(fleet, status["id"])
    assert first[:3] == (1, 4, False)
    assert (
        second[:4] == (2, 1, True, 17)
        and "skipped to the final round with 4 messages; 32 tokens left" in second[4]
    )
    assert status["runs"] == {"total": 1, "done": 1}


def test_final_round_with_smaller_max_tokens(fleet: Fleet, tmp_path: Path) -> None:
    status = run(fleet, tmp_path, "short", 1, "--rounds", "4", "--problem-budget", "20")
    (only,) = plans(fleet, status["id"])
    assert only[:4] == (1, 1, True, 20) and "final round with max_tokens shrunk to 20" in only[4]


def test_budget_exhausted(fleet: Fleet, tmp_path: Path) -> None:
    status = run(fleet, tmp_path, "broke", 2, "--problem-budget", "5")
    assert status["runs"] == {"total": 2, "budget_exhausted": 2} and status["trajectories"] == {"total": 0}
    assert status["budget_decisions"]["exhausted"]["count"] == 2


def test_a_campaign_budget_smaller_than_its_natural_need(fleet: Fleet, tmp_path: Path) -> None:
    status = run(fleet, tmp_path, "tight", 6, "--preset", "low", "--campaign-budget", "300")
    assert status["status"] == "done" and status["tokens"]["used"] <= 300
    ended = ("budget_exhausted", "done", "no_conclusion")
    assert sum(status["runs"].get(s, 0) for s in ended) == 6
    out = tmp_path / "tight.jsonl"
    assert fleet.pacore("export", "tight", "-o", str(out)).returncode == 0
    assert {json.loads(line)["status"] for line in out.read_text().splitlines()} <= {
        "done",
        "no_conclusion",
        "budget_exhausted",
    }


def test_segments_continue_through_the_prefix_cache_and_the_books_hold_what_vllm_generated(
    fleet: Fleet, vllm_server, tmp_path: Path
) -> None:
    """Blocks of 8 tokens: every trajectory (17 tokens or more) is generated in segments, each a new
    request from the exact token ids so far. vLLM's own counters: its prefix cache serves the
    continuations, and it generated exactly the tokens the ledger holds."""
    names = (
        "vllm:generation_tokens_total",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
    )
    before = {m: vllm_server.metric(m) for m in names}
    status = run(fleet, tmp_path, "segmented", 2, "--rounds", "2")
    served = {m: vllm_server.metric(m) - before[m] for m in names}
    segmented = fleet.query(
        "SELECT count(*) FROM trajectory WHERE campaign_id = %s AND error LIKE %s", status["id"], "%segments%"
    )[0][0]
    assert status["runs"].get("done", 0) + status["runs"].get("no_conclusion", 0) == 2
    assert segmented == status["trajectories"]["total"] == 2 * 3, "every trajectory went on in segments"
    assert status["tokens"]["used"] == served["vllm:generation_tokens_total"]
    assert served["vllm:prefix_cache_hits_total"] > 0, served
