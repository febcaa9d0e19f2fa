"""Campaign control against real workers: pause and resume regenerate nothing, cancel stops the
engine's streams through the heartbeat and closes every budget, retry --failed reruns failed rounds,
delete asks first. Flags in the database, never Celery's revoke."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.conftest import pacore_executable
from tests.fleet import wait_until
from tests.integration.conftest import Fleet


def submit(fleet: Fleet, tmp_path: Path, name: str, text: str, problems: int = 2) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"{name}{i}", "problem": f"{text} {i}"}) + "\n" for i in range(problems))
    )
    fleet.submit(path, "--preset", "low")


def status(fleet: Fleet, name: str) -> dict:
    return json.loads(fleet.pacore("status", name, "--json").stdout)


def test_pause_lets_running_work_finish_and_resume_regenerates_nothing(fleet: Fleet, tmp_path: Path) -> None:
    # 4 s a trajectory: the pause (a CLI start, slow under load) lands while round 1 runs
    submit(fleet, tmp_path, "paused", "PACE100 LONG40 a problem")
    fleet.until(
        "SELECT count(*) >= 4 FROM trajectory t JOIN campaign c ON c.id = t.campaign_id "
        "WHERE c.name = 'paused' AND t.status = 'running'",
    )
    paused = fleet.pacore("pause", "paused")
    assert paused.returncode == 0 and "paused" in paused.stdout
    cid = status(fleet, "paused")["id"]
    fleet.until("SELECT count(*) = 0 FROM trajectory WHERE campaign_id = %s AND status = 'running'", cid)
    # nothing new starts while paused: another campaign runs start to end on the same fleet (every
    # dispatch tick and claim meanwhile would have started the paused one's work)
    submit(fleet, tmp_path, "meanwhile", "a problem", problems=1)
    assert fleet.wait_finished("meanwhile")["runs"] == {"total": 1, "done": 1}
    assert (
        fleet.query("SELECT count(*) FROM trajectory WHERE campaign_id = %s AND status = 'running'", cid)[0][
            0
        ]
        == 0
    )
    during = status(fleet, "paused")
    assert during["status"] == "paused" and during["trajectories"].get("pending", 0) > 0
    assert fleet.pacore("pause", "paused").returncode != 0, "pausing twice is an error"
    done_before = fleet.query(
        "SELECT count(*) FROM trajectory WHERE campaign_id = %s AND status = 'done'", cid
    )[0][0]

    assert fleet.pacore("resume", "paused").returncode == 0
    final = fleet.wait_finished("paused")
    assert final["runs"] == {"total": 2, "done": 2} and final["status"] == "done"
    attempts = fleet.query(
        "SELECT count(*), count(DISTINCT a.trajectory_id) FROM attempt a JOIN trajectory t ON t.id = a.trajectory_id "
        "WHERE t.campaign_id = %s",
        cid,
    )[0]
    assert attempts == (10, 10) and done_before > 0, "each trajectory generated once, across the pause"
    fleet.assert_within_budget(final)


def test_cancel_stops_the_streams_and_closes_the_books(fleet: Fleet, tmp_path: Path) -> None:
    engine = fleet.engine_ref
    submit(fleet, tmp_path, "cancelled", "PACE100 LONG200 a long problem")
    fleet.until(
        "SELECT count(*) >= 4 FROM trajectory t JOIN campaign c ON c.id = t.campaign_id "
        "WHERE c.name = 'cancelled' AND t.status = 'running'",
    )
    # the streams have made progress: a heartbeat has checkpointed text of every running trajectory
    fleet.until(
        "SELECT count(DISTINCT ch.trajectory_id) >= 4 FROM chunk ch JOIN trajectory t ON t.id = ch.trajectory_id "
        "JOIN campaign c ON c.id = t.campaign_id WHERE c.name = 'cancelled'"
    )
    cancelled = fleet.pacore("cancel", "cancelled")
    assert cancelled.returncode == 0 and "cancelled (2 run(s), 8 trajectories)" in cancelled.stdout
    deadline = time.monotonic() + 10
    while engine.streaming and time.monotonic() < deadline:  # the workers hear it at their next heartbeat
        time.sleep(0.1)
    assert engine.streaming == 0, "no stream keeps going for a cancelled campaign"
    final = status(fleet, "cancelled")
    assert final["status"] == "cancelled" and final["runs"] == {"total": 2, "cancelled": 2}
    assert final["trajectories"] == {"total": 8, "cancelled": 8}
    assert final["tokens"]["reserved"] == 0  # used: what the attempts had streamed as of their last write
    cid = final["id"]
    ledger = fleet.query(
        "SELECT count(*) FILTER (WHERE outcome = 'cancelled'), coalesce(sum(a.completion_tokens), 0) FROM attempt a "
        "JOIN trajectory t ON t.id = a.trajectory_id WHERE t.campaign_id = %s",
        cid,
    )[0]
    assert ledger[0] >= 4 and ledger[1] == final["tokens"]["used"]
    assert fleet.query(
        "SELECT sum(tokens_reserved), sum(tokens_granted - tokens_used) FROM run WHERE campaign_id = %s", cid
    )[0] == (0, 0)
    assert fleet.pacore("cancel", "cancelled").returncode != 0


def test_cancel_cuts_streams_that_send_nothing(fake_fleet, fake_engine, tmp_path: Path) -> None:
    """An engine that sends the headers and then nothing: the per-line guard never runs, so the worker's
    watchdog cuts the reads of the cancelled trajectories (long before the client's own read timeout,
    here 120 s); the engine sees its requests go."""
    with fake_fleet(extra_env={"PACORE_ENGINE_TIMEOUT": "120"}) as fleet:
        cancel_silent(fleet, fake_engine, tmp_path)


def cancel_silent(fleet: Fleet, engine, tmp_path: Path) -> None:
    submit(fleet, tmp_path, "cancelsilent", "SILENT a problem", problems=1)
    fleet.until(
        "SELECT count(*) >= 4 FROM trajectory t JOIN campaign c ON c.id = t.campaign_id "
        "WHERE c.name = 'cancelsilent' AND t.status = 'running'",
    )
    wait_until(lambda: engine.streaming >= 4, "the engine holds the silent requests")
    assert fleet.pacore("cancel", "cancelsilent").returncode == 0
    wait_until(lambda: engine.streaming == 0, "the engine to see the cancelled requests go")
    final = status(fleet, "cancelsilent")
    assert final["runs"] == {"total": 1, "cancelled": 1} and final["tokens"]["reserved"] == 0


def test_retry_failed_reruns_the_failed_final_round(fleet: Fleet, tmp_path: Path) -> None:
    """Round 1 fails whole and goes on without references (as the official pipeline); the final round
    fails too, and so does the run. Retrying it re-runs its final trajectory."""
    engine = fleet.engine_ref
    engine.failing = True
    submit(fleet, tmp_path, "retried", "FAILWHILE a problem the engine cannot answer yet", problems=1)
    first = fleet.wait_finished("retried")
    assert first["runs"] == {"total": 1, "failed": 1} and first["status"] == "done"
    engine.failing = False
    retried = fleet.pacore("retry", "retried", "--failed")
    assert retried.returncode == 0 and "(1 run(s), 1 trajectories)" in retried.stdout
    final = fleet.wait_finished("retried")
    assert final["runs"] == {"total": 1, "done": 1} and final["status"] == "done"
    assert final["trajectories"] == {"total": 5, "done": 1, "failed": 4}
    fleet.assert_within_budget(final)


def test_delete_asks_first(fleet: Fleet, tmp_path: Path) -> None:
    submit(fleet, tmp_path, "doomed", "a problem", problems=1)
    fleet.wait_finished("doomed")
    refused = subprocess.run(
        [pacore_executable(), "delete", "doomed"],
        input="n\n",
        env=fleet.env(),
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and status(fleet, "doomed")["name"] == "doomed"
    done = fleet.pacore("delete", "doomed", "--yes")
    assert done.returncode == 0 and "deleted" in done.stdout
    gone = fleet.pacore("status", "doomed")
    assert gone.returncode != 0 and "no campaign named 'doomed'" in gone.stderr


def test_watch_follows_a_campaign_to_its_end_and_a_problem_shows_its_trajectories(
    fleet: Fleet, tmp_path: Path
) -> None:
    # about 7 s of generation (2 rounds of 35 tokens at 100 ms): the campaign starts as soon as it is
    # submitted (the submit wakes the scheduler), so it must outlast the watch's start-up
    submit(fleet, tmp_path, "watched", "PACE100 LONG30 a problem")
    watch = subprocess.run(
        [pacore_executable(), "status", "watched", "--watch", "--interval", "0.3"],
        env=fleet.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert watch.returncode == 0, watch.stderr
    assert "watched" in watch.stdout and "runs 2/2 done" in watch.stdout and "tokens/s" in watch.stdout
    lines = watch.stdout.splitlines()  # not on a terminal: a line per interval, no redrawn panel
    assert len(lines) >= 2 and all(" watched " in line and "tokens/s" in line for line in lines), lines
    detail = json.loads(fleet.pacore("status", "watched", "watched0", "--json").stdout)
    assert detail["problem_id"] == "watched0" and len(detail["runs"]) == 1
    rounds = detail["runs"][0]["rounds"]
    assert [(r["index"], r["k"], len(r["trajectories"])) for r in rounds] == [(1, 4, 4), (2, 1, 1)]
    assert all(
        t["status"] == "done" and t["completion_tokens"] == 35 for r in rounds for t in r["trajectories"]
    )
    missing = fleet.pacore("status", "watched", "nope")
    assert (
        missing.returncode != 0
        and "has no problem 'nope' (its first problems: watched0, watched1)" in missing.stderr
    )
    human = fleet.pacore("status", "watched", "watched1")
    assert human.returncode == 0 and "round 2 (K=1, done)" in human.stdout
