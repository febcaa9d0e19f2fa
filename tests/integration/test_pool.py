"""The round-1 pool (`--pool N`): N round-1 trajectories per problem generated once; each run samples
K1 of them; a later campaign on the same problems, model and sampling reuses the pool."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pacore.core.campaign import CampaignConfig
from tests.integration.conftest import Fleet
from tests.official import assert_follows_official


def problems(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"q{i}", "problem": f"pooled problem {i}"}) + "\n" for i in range(2))
    )
    return path


def run(fleet: Fleet, tmp_path: Path, name: str, *options: str) -> dict:
    fleet.submit(problems(tmp_path, name), "--name", name, "--samples", "3", *options)
    return fleet.wait_finished(name)


def test_runs_sample_round_one_from_one_pool_and_later_campaigns_reuse_it(
    fleet: Fleet, tmp_path: Path
) -> None:
    first = run(fleet, tmp_path, "pool-a", "--rounds", "2", "--pool", "4")
    assert first["runs"] == {"total": 6, "done": 6} and first["pool_runs"] == {"total": 2, "done": 2}
    assert first["trajectories"] == {"total": 2 * 4 + 6, "done": 14}, (
        "the pool once, then each run's final round"
    )
    config = CampaignConfig.model_validate(first["config"])
    links = fleet.query(
        "SELECT run.id, array_agg(t.index ORDER BY rt.position), count(DISTINCT t.round_id) FROM run "
        "JOIN round r ON r.run_id = run.id AND r.index = 1 JOIN round_trajectory rt ON rt.round_id = r.id "
        "JOIN trajectory t ON t.id = rt.trajectory_id WHERE run.campaign_id = %s AND run.sample >= 0 GROUP BY run.id",
        first["id"],
    )
    assert len(links) == 6
    assert all(indices == config.pool_sample(run_id) and pools == 1 for run_id, indices, pools in links)
    assert len({tuple(i) for _, i, _ in links}) > 1, "runs sample different subsets"

    reused = run(fleet, tmp_path, "pool-b", "--rounds", "4", "--pool", "4")
    assert reused["runs"] == {"total": 6, "done": 6} and "pool_runs" not in reused
    assert reused["trajectories"] == {"total": 6, "done": 6}, "no round-1 trajectory of its own"
    foreign = fleet.query(
        "SELECT count(*) FILTER (WHERE t.campaign_id = %s), count(*) FROM run JOIN round r ON r.run_id = run.id "
        "AND r.index = 1 JOIN round_trajectory rt ON rt.round_id = r.id JOIN trajectory t ON t.id = rt.trajectory_id "
        "WHERE run.campaign_id = %s",
        first["id"],
        reused["id"],
    )[0]
    assert foreign == (24, 24), (
        "every round-1 position of the second campaign is a trajectory of the first's pool"
    )

    separate = run(fleet, tmp_path, "pool-c", "--rounds", "4")
    assert separate["tokens"]["used"] == 6 * 5 * 7 and reused["tokens"]["used"] == 6 * 7

    report = json.loads(fleet.pacore("report", "pool-b", "pool-c", "--json").stdout)["campaigns"]
    assert [r["ttc_mean"] for r in report] == [5 * 7, 5 * 7], "TTC counts the sampled pool trajectories"
    exported = [
        json.loads(line) for line in fleet.pacore("export", "pool-b", "--no-grade").stdout.splitlines()
    ]
    assert all(d["pool_trajectory"] for e in exported for d in e["round_details"][0])
    # a round drawn from the pool completes in its sample order, whatever order the pool finished in
    assert all(e["round_finish_order"][0] == [0, 1, 2, 3] for e in exported)
    for e in exported:
        messages = [{"role": "user", "content": f"pooled problem {e['problem_id'][1:]}"}]
        assert assert_follows_official(e, messages, seed=42) == 1

    refused = fleet.pacore("delete", "pool-a", "--yes")
    assert refused.returncode != 0 and "holds a round-1 pool that 'pool-b' use" in refused.stderr
    bad = fleet.pacore("submit", str(problems(tmp_path, "badpool")), "--rounds", "8", "--pool", "4")
    assert bad.returncode != 0 and "smaller than round 1's K=8" in bad.stderr


def test_a_pool_another_campaign_waits_for_cannot_be_cancelled(fleet: Fleet, tmp_path: Path) -> None:
    def slow(name: str) -> Path:
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps({"id": "s0", "problem": "PACE100 LONG30 a slow pooled problem"}) + "\n")
        return path

    fleet.submit(slow("owner"), "--name", "owner", "--rounds", "2", "--pool", "4")
    deadline = time.monotonic() + 30
    while not fleet.query(
        "SELECT count(*) FROM trajectory t JOIN campaign c ON c.id = t.campaign_id "
        "WHERE c.name = 'owner' AND t.status = 'running'"
    )[0][0]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    fleet.submit(slow("user"), "--name", "user", "--rounds", "2", "--pool", "4")
    deadline = time.monotonic() + 30
    while not fleet.query(
        "SELECT count(*) FROM round r JOIN run ON run.id = r.run_id JOIN campaign c "
        "ON c.id = run.campaign_id WHERE c.name = 'user'"
    )[0][0]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    refused = fleet.pacore("cancel", "owner")
    assert refused.returncode != 0 and "still generating a round-1 pool that 'user' use" in refused.stderr
    assert fleet.wait_finished("user")["runs"] == {"total": 1, "done": 1}
