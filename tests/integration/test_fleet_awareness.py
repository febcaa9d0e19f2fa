"""Fleet awareness (issue #15 item 1): a campaign's model meets the models live workers serve. Submit
takes the fleet's only model, refuses to guess among several, and says when no live worker serves a
campaign's; status shows the live fleet per model, campaigns that wait for one, and trajectories whose
worker stopped beating. Real scheduler, workers, FakeEngine, PostgreSQL and Redis."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.fake_engine import FakeEngine
from tests.fleet import Fleet, wait_until


def problems(tmp_path: Path, name: str, text: str = "a problem") -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(json.dumps({"id": f"{name}0", "problem": text}) + "\n")
    return path


def live_workers(fleet: Fleet, n: int) -> None:
    wait_until(
        lambda: fleet.query("SELECT count(*) FROM worker WHERE status = 'up'")[0][0] == n,
        f"{n} workers to register",
        60,
    )


def status_json(fleet: Fleet, *args: str) -> dict:
    said = fleet.pacore("status", *args, "--json")
    assert said.returncode == 0, said.stderr
    return json.loads(said.stdout)


def test_submit_takes_the_fleets_only_model_and_says_when_no_live_worker_serves_a_campaigns(
    fake_fleet, tmp_path: Path
) -> None:
    with fake_fleet() as fleet:
        live_workers(fleet, 1)
        auto = fleet.pacore("submit", str(problems(tmp_path, "auto")))
        assert auto.returncode == 0, auto.stderr
        assert "model 'fake-model': the only model the live fleet serves (1 workers)" in auto.stderr
        assert status_json(fleet, "auto")["model"] == "fake-model"

        other = fleet.pacore("submit", str(problems(tmp_path, "other")), "--model", "other-model")
        assert other.returncode == 0, other.stderr
        assert "no live worker serves model 'other-model'" in other.stderr
        assert "the live fleet serves 'fake-model' (1 workers)" in other.stderr

        fleet.wait_finished("auto")
        listed = fleet.pacore("status")
        assert "fleet: fake-model: 1 live workers, 8 slots" in listed.stdout, listed.stdout
        assert "campaign other waits: no live worker serves model 'other-model'" in listed.stdout
        assert "campaign auto waits" not in listed.stdout
        waiting = status_json(fleet, "other")
        assert waiting["fleet"] == {"live_workers": 0, "slots": 0, "engines_down": 0}
        assert waiting["waiting_for"].startswith("no live worker serves model 'other-model'")
        assert status_json(fleet, "auto")["waiting_for"] is None
        everything = status_json(fleet)
        assert everything["fleet"] == [
            {"model": "fake-model", "workers": 1, "slots": 8, "engines_down": 0, "revisions": []}
        ]


def test_with_no_live_worker_submit_takes_pacore_model_and_with_several_models_it_asks(
    fake_fleet, tmp_path: Path
) -> None:
    with fake_fleet(workers=0) as fleet:
        alone = fleet.pacore("submit", str(problems(tmp_path, "alone")))
        assert alone.returncode == 0, alone.stderr
        assert (
            "no live worker serves any model: the campaign takes PACORE_MODEL ('stepfun-ai/PaCoRe-8B')"
            in (alone.stderr)
        )
        assert status_json(fleet, "alone")["model"] == "stepfun-ai/PaCoRe-8B"
        with FakeEngine(model="fake-b") as second, FakeEngine(model="fake-c") as third:
            fleet.start(
                "worker-b", "worker", "--engine-url", second.url, "--concurrency", "2", "--revision", "r1"
            )
            fleet.start("worker-c", "worker", "--engine-url", third.url, "--concurrency", "2")
            live_workers(fleet, 2)
            several = fleet.pacore("submit", str(problems(tmp_path, "several")))
            assert several.returncode == 2, several.stderr
            assert (
                "the live fleet serves several models ('fake-b' (1 workers), 'fake-c' (1 workers)): "
                "choose one with --model" in several.stderr
            )
            assert fleet.query("SELECT count(*) FROM campaign WHERE name = 'several'") == [(0,)]
            by_model = {f["model"]: f for f in status_json(fleet)["fleet"]}
            assert (by_model["fake-b"]["revisions"], by_model["fake-c"]["revisions"]) == (["r1"], [])
            assert "fleet: fake-b: 1 live workers, 2 slots, revision r1" in fleet.pacore("status").stdout
            fleet.stop()


def test_status_shows_trajectories_whose_worker_stopped_beating(fake_fleet, tmp_path: Path) -> None:
    quick_leases = {
        "PACORE_LEASE_SECONDS": "5",
        "PACORE_HEARTBEAT_SECONDS": "1",
        "PACORE_RECONCILE_INTERVAL": "600",  # nothing re-drives them while the test looks
    }
    with fake_fleet(concurrency=4, extra_env=quick_leases) as fleet:
        fleet.submit(problems(tmp_path, "orphaned", "PACE100 LONG200 a slow problem"), "--preset", "low")
        fleet.until("SELECT count(*) = 4 FROM trajectory WHERE status = 'running' AND worker_id IS NOT NULL")
        worker = fleet.procs[1]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        wait_until(
            lambda: (status_json(fleet, "orphaned")["leases_expired"] or {}).get("trajectories") == 4,
            "the four leases to expire",
            30,
        )
        listed = fleet.pacore("status")
        assert "campaign orphaned: 4 running trajectories' workers stopped beating" in listed.stdout
        assert "the reconciler re-drives them within 600 s" in listed.stdout
