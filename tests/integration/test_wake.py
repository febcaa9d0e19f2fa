"""A submit or a resume wakes the scheduler when it commits (LISTEN/NOTIFY, pacore/store/notices.py):
its dispatch tick starts the work at once, not at its next interval. The scheduler here ticks every
10 minutes, so within the tests' wait only a notice can have started it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fleet import Fleet

SLOW_TICK = {"PACORE_DISPATCH_INTERVAL": "600"}
ROUNDS = "SELECT count(*) FROM round r JOIN run ON run.id = r.run_id JOIN campaign c ON c.id = run.campaign_id WHERE c.name = %s"


def problems(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"{name}{i}", "problem": f"PACE5 problem {i}"}) + "\n" for i in range(2))
    )
    return path


LISTENER = "datname = current_database() AND query = 'LISTEN pacore_work'"


def listening(fleet: Fleet) -> None:
    """Once the scheduler listens, its first tick has run (listening starts with one)."""
    fleet.until(f"SELECT count(*) > 0 FROM pg_stat_activity WHERE {LISTENER}")


def test_a_submit_starts_its_runs_without_waiting_for_the_next_tick(fake_fleet, tmp_path: Path) -> None:
    with fake_fleet(workers=0, extra_env=SLOW_TICK) as fleet:
        listening(fleet)
        fleet.submit(problems(tmp_path, "woken"), "--name", "woken", "--preset", "low")
        fleet.until(f"SELECT ({ROUNDS}) = 2", "woken", timeout=60)  # round 1 of both runs


def test_a_resume_publishes_again_without_waiting_for_the_next_tick(fake_fleet, tmp_path: Path) -> None:
    with fake_fleet(workers=0, extra_env=SLOW_TICK) as fleet:
        listening(fleet)
        fleet.submit(problems(tmp_path, "paused"), "--name", "paused", "--preset", "low")
        fleet.until(f"SELECT ({ROUNDS}) = 2", "paused", timeout=60)
        # the tick publishes a trajectory without a message only once it is older than its lost-publish
        # grace (scheduler/tasks.py UNPUBLISHED_GRACE_SECONDS, 10 s)
        fleet.until(
            "SELECT min(now() - t.created_at) > interval '11 seconds' FROM trajectory t "
            "JOIN campaign c ON c.id = t.campaign_id WHERE c.name = %s",
            "paused",
        )
        assert fleet.pacore("pause", "paused").returncode == 0
        assert fleet.pacore("resume", "paused").returncode == 0  # unstamps the pending trajectories
        fleet.until(
            "SELECT count(*) = 8 FROM trajectory t JOIN campaign c ON c.id = t.campaign_id "
            "WHERE c.name = %s AND t.published_at IS NOT NULL",
            "paused",
            timeout=60,
        )


def test_the_scheduler_listens_again_after_its_connection_is_lost(fake_fleet, tmp_path: Path) -> None:
    with fake_fleet(workers=0, extra_env=SLOW_TICK) as fleet:
        listening(fleet)
        (old,) = fleet.query(f"SELECT pid FROM pg_stat_activity WHERE {LISTENER}")
        fleet.query("SELECT pg_terminate_backend(%s)", old[0])
        fleet.until(f"SELECT count(*) > 0 FROM pg_stat_activity WHERE {LISTENER} AND pid <> %s", old[0])
        fleet.submit(problems(tmp_path, "again"), "--name", "again", "--preset", "low")
        fleet.until(f"SELECT ({ROUNDS}) = 2", "again", timeout=60)
