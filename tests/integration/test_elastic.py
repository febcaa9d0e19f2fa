"""The elastic fleet (issue #17): the database's demand signal (view `fleet_demand`), read verbatim by
the KEDA ScaledObject, and `pacore fleet autoscale` scaling a fleet out from 0 to its maximum and back to
0 through a campaign, scale-in only by drain. Real PostgreSQL, Redis, scheduler, workers and CLI; the
FakeEngine answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import yaml

from pacore.store.queries import load
from tests.fleet import wait_until

REPO = Path(__file__).resolve().parents[2]
KEDA = REPO / "ops/deploy/k8s/keda-scaledobject.yaml"


def problems(tmp_path: Path, name: str, text: str, n: int) -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"{name}{i}", "problem": f"{text} {i}"}) + "\n" for i in range(n))
    )
    return path


def keda_query() -> tuple[str, str]:
    """The ScaledObject's query, and the model it names."""
    trigger = yaml.safe_load(KEDA.read_text())["spec"]["triggers"][0]
    query = trigger["metadata"]["query"]
    model = re.search(r"model = '([^']+)'", query)
    assert model, query
    return query, model[1]


def test_the_keda_object_reads_the_named_demand_query_verbatim() -> None:
    query, model = keda_query()
    assert query == load()["demand_of_model"].sql.replace(":model", f"'{model}'")
    assert "FROM fleet_demand" in query


def test_demand_is_round_one_of_every_run_of_active_campaigns(fake_fleet, tmp_path: Path) -> None:
    with fake_fleet(workers=0) as fleet:
        # 5 problems x 2 samples, round 1 of K=3 (then 1): 30 slots, whether a run has started (its 3
        # trajectories pending) or not (its K1 to come); no worker takes any of it
        fleet.submit(problems(tmp_path, "need", "PACE10", 5), "--rounds", "3", "--samples", "2")
        fleet.until("SELECT count(*) > 0 FROM run WHERE status = 'running'")  # admission started some
        shown = json.loads(fleet.pacore("fleet", "--json").stdout)
        assert shown == [
            {"model": fleet.model, "demand_slots": 30, "live_workers": 0, "live_slots": 0, "engines_down": 0}
        ]
        # the KEDA object's query, run as KEDA runs it (its model swapped for this fleet's)
        query, model = keda_query()
        with psycopg.connect(fleet.database_url) as conn:
            assert conn.execute(query.replace(model, fleet.model)).fetchone() == (30,)
            assert conn.execute(query).fetchone() == (0,)  # another model's queue needs nothing

        assert fleet.pacore("pause", "need").returncode == 0  # a paused campaign needs no slots
        assert json.loads(fleet.pacore("fleet", "--json").stdout) == []
        assert fleet.pacore("fleet").stdout == "no demand and no live workers\n"
        with psycopg.connect(fleet.database_url) as conn:
            assert conn.execute(query.replace(model, fleet.model)).fetchone() == (0,)


def test_the_autoscaler_scales_out_to_its_maximum_and_back_to_zero_by_drain(
    fake_fleet, tmp_path: Path
) -> None:
    with fake_fleet(workers=0, extra_env={"PACORE_HEARTBEAT_SECONDS": "1"}) as fleet:
        # 8 problems, K1 = 4 (then 1): demand 32 slots, 8 workers' worth at 4 each, capped at 3
        status = fleet.submit(problems(tmp_path, "elastic", "PACE40 LONG30", 8), "--rounds", "4")
        autoscaler = fleet.start(
            "autoscaler",
            "fleet",
            "autoscale",
            "--model",
            fleet.model,
            "--engine-url",
            fleet.engine_url,
            "--min",
            "0",
            "--max",
            "3",
            "--per-worker",
            "4",
            "--cooldown",
            "1",
            "--interval",
            "0.3",
            "--log-dir",
            str(tmp_path / "workers"),
        )
        fleet.until("SELECT count(*) = 3 FROM worker WHERE status = 'up'", timeout=60)
        assert fleet.query("SELECT count(*) FROM run WHERE status IN ('pending', 'running')")[0][0] > 0, (
            "the maximum was reached while work was queued"
        )
        status = fleet.wait_finished("elastic", timeout=180)
        assert status["runs"] == {"total": 8, "done": 8}  # 0 lost
        fleet.until("SELECT count(*) = 0 FROM worker WHERE status = 'up'", timeout=60)  # back to 0
        wait_until(lambda: log_drained(tmp_path) == started(tmp_path), "every worker to have drained", 30)
        log = (tmp_path / "autoscaler.log").read_text()
        assert started(tmp_path) >= 3 and "exited on its own" not in log, log
        assert autoscaler.poll() is None, "the autoscaler keeps running with 0 workers"

        # 0 double-counted: one settled result per trajectory, the ledger equal to the campaign's count
        twice = fleet.query(
            "SELECT count(*) FROM (SELECT a.trajectory_id FROM attempt a JOIN trajectory t ON t.id = "
            "a.trajectory_id WHERE t.campaign_id = %s AND a.outcome = 'done' GROUP BY a.trajectory_id "
            "HAVING count(*) > 1) x",
            status["id"],
        )[0][0]
        assert twice == 0
        fleet.assert_within_budget(status)
        # every worker left by drain (its row marked down on a clean exit), and no generation was cut:
        # nothing handed back, every attempt ended with its result
        rows = fleet.query("SELECT status, count(*) FROM worker GROUP BY status")
        assert rows == [("down", started(tmp_path))], rows
        outcomes = fleet.query(
            "SELECT a.outcome, count(*) FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id "
            "WHERE t.campaign_id = %s GROUP BY a.outcome",
            status["id"],
        )
        assert outcomes == [("done", 8 * 4 + 8)], outcomes


def started(tmp_path: Path) -> int:
    return len(re.findall(r"started worker \d+ \(pid", (tmp_path / "autoscaler.log").read_text()))


def log_drained(tmp_path: Path) -> int:
    return len(re.findall(r"drained in [\d.]+s, exit code 0", (tmp_path / "autoscaler.log").read_text()))
