"""Secrets (the database password inside its URL, the engine's API key) reach the processes through
the environment or files, are sent where they belong, and appear in no log, no output and no command
line of a real run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fake_engine import FakeEngine
from tests.fleet import running_fleet

PASSWORD = "pw-7f3a9c1e-never-log-me"
API_KEY = "sk-5d2b8e40-never-log-me"


def test_secrets_stay_out_of_logs_outputs_and_command_lines(
    postgres_admin, template_db, redis_available, tmp_path: Path
) -> None:
    (tmp_path / "secrets").mkdir()
    key_file = tmp_path / "secrets" / "engine_api_key"
    key_file.write_text(API_KEY + "\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    with (
        FakeEngine(api_key=API_KEY) as engine,
        running_fleet(
            postgres_admin,
            template_db,
            redis_available,
            engine.url,
            engine.model,
            logs,
            extra_env={"PACORE_ENGINE_API_KEY_FILE": str(key_file)},
            password=PASSWORD,
            database_url_file=tmp_path / "secrets" / "database_url",
        ) as fleet,
    ):
        problems = tmp_path / "p.jsonl"
        problems.write_text(
            "".join(json.dumps({"id": f"s{i}", "problem": f"problem {i}"}) + "\n" for i in range(3))
        )
        fleet.submit(problems, "--preset", "low")
        status = fleet.wait_finished("p")
        assert status["runs"] == {"total": 3, "done": 3}, (
            "the key reached the engine (it refuses requests without)"
        )
        outputs = [fleet.pacore("status", "p"), fleet.pacore("export", "p"), fleet.pacore("status", "nope")]
        command_lines = [
            Path(f"/proc/{p.pid}/cmdline").read_bytes().decode(errors="replace") for p in fleet.procs
        ]
        unauthorized = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{engine.url}/v1/models"],
            capture_output=True,
            text=True,
        ).stdout
    assert unauthorized == "401", "the engine really requires the key"
    texts = [path.read_text(errors="replace") for path in logs.glob("*.log")]
    texts += [o.stdout + o.stderr for o in outputs] + command_lines
    assert len(texts) >= 6 and any("scheduler" in t or "celery" in t for t in texts)
    for secret in (PASSWORD, API_KEY):
        leaks = [t[max(0, t.find(secret) - 200) : t.find(secret) + 50] for t in texts if secret in t]
        assert not leaks, f"a secret leaked: {leaks}"


ENGINE_PASSWORD = "engine-pw-81c4-never-log-me"


def test_an_engine_given_by_its_v1_base_url_with_a_password_works_and_the_password_is_never_shown(
    postgres_admin, template_db, redis_available, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with FakeEngine() as engine:
        url = engine.url.replace("http://", f"http://pacore:{ENGINE_PASSWORD}@") + "/v1"
        with running_fleet(postgres_admin, template_db, redis_available, url, engine.model, logs) as fleet:
            problems = tmp_path / "v.jsonl"
            problems.write_text(json.dumps({"id": "v1", "problem": "problem v1"}) + "\n")
            fleet.submit(problems, "--preset", "low")
            assert fleet.wait_finished("v")["runs"] == {"total": 1, "done": 1}
            registered = fleet.query("SELECT engine_url FROM worker")
            outputs = [fleet.pacore("status"), fleet.pacore("status", "v")]
    # the run finished: its requests reached /v1/chat/completions, not /v1/v1/...
    assert registered == [(engine.url.replace("http://", "http://pacore:***@"),)]
    texts = [path.read_text(errors="replace") for path in logs.glob("*.log")]
    texts += [o.stdout + o.stderr for o in outputs]
    assert len(texts) >= 4
    leaks = [t for t in texts if ENGINE_PASSWORD in t]
    assert not leaks, f"the engine's password leaked: {[t[:300] for t in leaks]}"


def test_a_malformed_engine_url_is_refused_at_once(cli) -> None:
    given = cli("worker", "--engine-url", "htp://gpu-7:8000/v1")
    assert given.returncode == 2, given.stderr
    assert "--engine-url" in given.stderr and "must begin with http:// or https://" in given.stderr
    assert "Traceback" not in given.stderr
    configured = cli("worker", env={"PACORE_ENGINE_URL": "http://gpu-7:80000"})
    assert configured.returncode == 1, configured.stderr
    assert "PACORE_ENGINE_URL" in configured.stderr and "Port out of range" in configured.stderr
    assert "Traceback" not in configured.stderr
