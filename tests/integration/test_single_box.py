"""`pacore run`: submit-or-resume on one machine, the database as broker, children that die with it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.conftest import pacore_env, pacore_executable
from tests.fake_engine import FakeEngine


def write_problems(path: Path, texts: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps({"id": f"q{i}", "problem": t, "answer": "3"}) + "\n" for i, t in enumerate(texts))
    )
    return path


def pacore_run(path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`pacore run FILE --preset low ARGS --json` to its end."""
    return subprocess.run(
        [pacore_executable(), "run", str(path), "--preset", "low", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_on_the_embedded_default_solves_and_summarises(tmp_path: Path) -> None:
    path = write_problems(tmp_path / "few.jsonl", ["One?", "Two?"])
    with FakeEngine() as engine:
        result = pacore_run(
            path,
            "--samples",
            "2",
            "--engine-url",
            engine.url,
            env=pacore_env(PACORE_DATA_DIR=str(tmp_path / "home")),
        )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "done" and summary["runs"] == {"total": 4, "done": 4}
    assert summary["config"]["model"] == "fake-model", "without --model, run takes the engine's only model"
    assert [a["problem_id"] for a in summary["answers"]] == ["q0", "q0", "q1", "q1"]
    assert all(a["answer"].isdigit() and a["tokens"] == 5 * 7 for a in summary["answers"])
    assert len(engine.requests) == 4 * 5
    assert "submitted campaign 'few'" in result.stderr
    # graded against the ground truth ("3"): pass@1 per problem, then over problems
    right = {
        q: [a["answer"] == "3" for a in summary["answers"] if a["problem_id"] == q] for q in ("q0", "q1")
    }
    expected = sum(sum(v) / len(v) for v in right.values()) / 2
    assert summary["accuracy"]["accuracy"] == expected and summary["accuracy"]["runs_graded"] == 4


def test_an_interrupted_run_resumes_and_regenerates_nothing_finished(
    database_url: str, tmp_path: Path
) -> None:
    path = write_problems(tmp_path / "slow.jsonl", [f"SLOW400 problem {i}" for i in range(6)])
    env = pacore_env(PACORE_DATABASE_URL=database_url, PACORE_DATA_DIR=str(tmp_path / "home"))
    with FakeEngine() as engine:
        argv = [
            pacore_executable(),
            "run",
            str(path),
            "--preset",
            "low",
            "--engine-url",
            engine.url,
            "--concurrency",
            "3",
        ]
        log = (tmp_path / "first.log").open("w")  # a file, not a pipe nobody drains
        first = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        in_flight = "SELECT (count(*) FILTER (WHERE status = 'done') >= 6 AND count(*) FILTER (WHERE status = 'running') > 0)::int FROM trajectory"
        wait_for(database_url, in_flight, at_least=1)
        os.kill(first.pid, signal.SIGKILL)  # no clean-up at all: its children die with it
        first.wait()
        children = "SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        wait_for(database_url, f"SELECT ({children})::int", at_least=1)  # they are gone: nothing writes
        with psycopg.connect(database_url) as conn:
            before = dict(
                conn.execute("SELECT id, finished_at FROM trajectory WHERE status = 'done'").fetchall()
            )
            running = conn.execute("SELECT count(*) FROM trajectory WHERE status = 'running'").fetchone()[0]
        assert len(before) >= 6 and running > 0, "the kill must leave work in flight"
        second = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["runs"] == {"total": 6, "done": 6}
    with psycopg.connect(database_url) as conn:
        after = dict(conn.execute("SELECT id, finished_at FROM trajectory").fetchall())
        preempted = conn.execute("SELECT count(*) FROM attempt WHERE outcome = 'preempted'").fetchone()[0]
        campaigns = conn.execute("SELECT count(*) FROM campaign").fetchone()[0]
        settled = conn.execute(
            "SELECT count(*), count(DISTINCT trajectory_id) FROM attempt WHERE outcome = 'done'"
        ).fetchone()
    assert {tid: after[tid] for tid in before} == before, "nothing that had finished was generated again"
    assert campaigns == 1, "the second run resumed the campaign"
    assert preempted == running and settled == (30, 30), "every running one was re-driven; each settled once"


def wait_for(url: str, sql: str, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url) as conn:
                value = conn.execute(sql).fetchone()[0]
            if value >= at_least:
                return value
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{sql} stayed below {at_least}")


def test_run_reads_the_database_url_from_a_file_and_takes_the_engines_v1_base_url(
    database_url: str, tmp_path: Path
) -> None:
    """PACORE_DATABASE_URL_FILE works with `run` (its children read the same file), and --engine-url may be
    the OpenAI base URL."""
    path = write_problems(tmp_path / "filed.jsonl", ["One?"])
    url_file = tmp_path / "database_url"
    url_file.write_text(database_url + "\n")
    with FakeEngine() as engine:
        result = pacore_run(
            path,
            "--engine-url",
            engine.url + "/v1",
            env=pacore_env(PACORE_DATABASE_URL_FILE=str(url_file), PACORE_DATA_DIR=str(tmp_path / "home")),
        )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["runs"] == {"total": 1, "done": 1}
    assert len(engine.requests) == 5  # four trajectories and the final one, all at /v1/chat/completions
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM campaign WHERE name = 'filed'").fetchone() == (1,)


def test_the_database_broker_has_the_generation_queue_before_any_process_starts(database_url: str) -> None:
    """`pacore run` creates the campaign model's queue row itself: a worker and the scheduler that
    declare it at the same instant on a fresh database raced on kombu's unique queue name, and the
    worker that lost died (seen once in CI). (In a process of its own: kombu's SQLAlchemy transport
    leaves this interpreter unable to parse Python at the session's end, CPython 3.11.7.)"""
    prepare = (
        "from pacore.settings import Settings; from pacore.store.database import Database, normalize_url; "
        "from scheduler.app import make_app, prepare_database_broker; import os; "
        "url = normalize_url(os.environ['PACORE_DATABASE_URL']); "
        "prepare_database_broker(make_app(Settings(broker_url=None), Database(url)), ['fake-model'])"
    )
    env = {**os.environ, "PACORE_DATABASE_URL": database_url}
    env.pop("PACORE_BROKER_URL", None)
    subprocess.run([sys.executable, "-c", prepare], env=env, check=True, timeout=60)
    with psycopg.connect(database_url) as conn:
        names = {name for (name,) in conn.execute("SELECT name FROM kombu_queue")}
    assert {"control", "generate.fake-model"} <= names, names
