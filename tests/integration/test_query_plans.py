"""The statements of every round (planning it, winning its advance) read the run's or the round's own
trajectories, whatever the planner's statistics say.

A fleet's tables grow from empty within minutes, and between two ANALYZEs the statistics may say that
almost no trajectory is done (or unfinished) while thousands are. A join planned on them scans every
done (or unfinished) trajectory of every campaign: a cost per round that grows with the database (3.5 ms
per round plan after 5,000 trajectories in control_plane.py). Checked on real PostgreSQL with EXPLAIN
ANALYZE of the store's own statements, after making the statistics stale on purpose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from pacore.campaigns.submit import submit
from pacore.core.campaign import CampaignConfig
from pacore.settings import Settings
from pacore.store.database import Database
from pacore.store.queries import load
from scheduler.rounds import start_runs

OTHERS = 3000  # trajectories of another campaign


def started(db: Database, tmp_path: Path, name: str) -> tuple[int, int]:
    """A campaign of one problem with its round 1 (K=2) created: (its run, its round)."""
    path = tmp_path / f"{name}.jsonl"
    path.write_text('{"id": "a", "problem": "What is 2+2?", "answer": "4"}\n')
    submit(db, path, name, CampaignConfig(rounds=[2, 1], model="m"))
    with db.store() as store:
        (publish,) = start_runs(store, Settings(), 10)
    with db.engine.begin() as conn:
        run_id = conn.exec_driver_sql("SELECT run_id FROM round WHERE id = %s", (publish.round_id,)).scalar()
    return int(run_id), publish.round_id


def trajectory_rows_read(plan: dict[str, Any]) -> float:
    """Rows the plan read from the trajectory table: returned and filtered out, over every loop."""
    read = 0.0
    if plan.get("Relation Name") == "trajectory":
        kept = plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
        read += (kept + plan.get("Rows Removed by Index Recheck", 0)) * plan.get("Actual Loops", 1)
    for child in plan.get("Plans", []):
        read += trajectory_rows_read(child)
    return read


def explained(url: str, name: str, params: dict[str, Any]) -> float:
    """EXPLAIN ANALYZE of a store statement, rolled back: the trajectory rows it read."""
    with psycopg.connect(url) as conn:
        ((plan,),) = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {load()[name].psycopg}", params).fetchall()
        conn.rollback()
    return trajectory_rows_read(plan[0]["Plan"])


def stale_statistics(db: Database, url: str, tmp_path: Path, analyzed: str, now: str) -> None:
    """Another campaign with OTHERS more trajectories, two per round, in more rounds of its run: the
    statistics are taken while they are `analyzed`, then they become `now`."""
    _, round_id = started(db, tmp_path, "elsewhere")
    of_them = "r.run_id = (SELECT run_id FROM round WHERE id = %(round)s) AND r.index > 100"
    params = {"round": round_id, "n": OTHERS // 2, "analyzed": analyzed, "now": now}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO round (run_id, index, k, is_final, input_messages) "
            "SELECT run_id, 100 + g, 2, false, input_messages FROM round, generate_series(1, %(n)s) g "
            "WHERE id = %(round)s",
            params,
        )
        conn.execute(
            "INSERT INTO trajectory (campaign_id, round_id, index, sampling_seed, status) "
            "SELECT run.campaign_id, r.id, i, i, %(analyzed)s FROM round r JOIN run ON run.id = r.run_id, "
            f"generate_series(0, 1) i WHERE {of_them}",
            params,
        )
        conn.execute("ANALYZE")
        conn.execute(
            f"UPDATE trajectory SET status = %(now)s FROM round r WHERE r.id = trajectory.round_id AND {of_them}",
            params,
        )


def test_planning_a_round_reads_only_its_runs_trajectories(database: Database, database_url: str, tmp_path):
    run_id, round_id = started(database, tmp_path, "planned")
    stale_statistics(database, database_url, tmp_path, "pending", "done")  # they say: nothing is done
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE trajectory SET status = 'done', completion_tokens = 7 FROM round r "
            "WHERE r.id = trajectory.round_id AND r.run_id = %s",
            (run_id,),
        )
    # winning a round reads what planning the next one needs: the run's mean tokens per done trajectory
    # (four reads per trajectory of its K=2: unfinished?, when finished, its outcome, the run's mean)
    assert explained(database_url, "win_round", {"id": round_id}) <= 10


def test_winning_a_round_reads_only_its_trajectories(database: Database, database_url: str, tmp_path):
    _, round_id = started(database, tmp_path, "won")
    stale_statistics(database, database_url, tmp_path, "done", "running")  # they say: nothing is unfinished
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE trajectory SET status = 'done' WHERE round_id = %s", (round_id,))
    assert explained(database_url, "win_round", {"id": round_id}) <= 10  # four per trajectory of its K=2
