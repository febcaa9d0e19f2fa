"""With no PACORE_DATABASE_URL, pacore runs on an embedded PostgreSQL in PACORE_DATA_DIR."""

import json
import subprocess

from tests.conftest import pacore_env, pacore_executable, shared_file


def test_submit_and_status_on_the_embedded_default(tmp_path) -> None:
    env = pacore_env(PACORE_DATA_DIR=str(tmp_path / "home"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [pacore_executable(), *args], env=env, capture_output=True, text=True, timeout=180
        )

    assert run("db", "upgrade").returncode == 0
    submitted = run(
        "submit", str(shared_file("math500.jsonl")), "--preset", "high", "--samples", "4", "--json"
    )
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["runs"] == 2000
    status = json.loads(run("status", "--json").stdout)
    assert status["campaigns"][0]["problems"] == 500 and status["campaigns"][0]["runs"]["pending"] == 2000
    assert (tmp_path / "home" / "postgres" / "PG_VERSION").read_text().strip() == "18"
    # The server stops with the last pacore process: nothing is left running.
    ps = subprocess.run(["pgrep", "-f", str(tmp_path / "home" / "postgres")], capture_output=True, text=True)
    assert ps.stdout.strip() == ""


def test_concurrent_first_commands_on_a_fresh_data_folder_all_succeed(tmp_path) -> None:
    """Three first commands at once: one initializes the server, the others join it; one migration runs,
    the others find the schema at head; none stops the server under another (issue #15)."""
    env = pacore_env(PACORE_DATA_DIR=str(tmp_path / "home"))
    started = [
        subprocess.Popen(
            [pacore_executable(), "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [(p.wait(180), *p.communicate()) for p in started]
    assert [code for code, _, _ in outcomes] == [0, 0, 0], outcomes
    assert all("database schema at" in out for _, out, _ in outcomes)
    assert not any("Warning" in err for _, _, err in outcomes), "no platformdirs warning on an embedded start"
    listed = subprocess.run(
        [pacore_executable(), "status"], env=env, capture_output=True, text=True, timeout=180
    )
    assert listed.returncode == 0 and "no campaigns yet" in listed.stdout, listed.stderr
