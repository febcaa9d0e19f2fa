"""The in-process engine (vLLM's async engine inside the worker process). Runs in the engine venv:

~/.cache/pacore/engine-venv/bin/python -m pytest tests/inprocess
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO, shared_file
from tests.fleet import running_fleet

try:
    import vllm  # noqa: F401
except ImportError:  # skipped locally, an error under CI=true, like every other missing service
    if IN_CI:
        raise
    pytest.skip(
        "vllm is not available: these tests run in the engine venv (ops/engine/bootstrap.sh)",
        allow_module_level=True,
    )

os.environ.update(VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_NUM_OF_RESERVED_CPU="0", HF_HUB_OFFLINE="1")
SCRIPT_TOKENS_WITHOUT_HMM = 8 + 1 + 4 + 1 + 2 + 1


@pytest.fixture(scope="module")
def model_dir() -> Path:
    built = subprocess.run(
        ["bash", str(REPO / "ops/engine/bootstrap.sh")], capture_output=True, text=True, check=True
    )
    return Path(built.stdout.split()[1])


def test_concurrent_generations_share_one_engine_and_one_event_loop(model_dir: Path) -> None:
    from worker.engine import GenerationRequest
    from worker.inprocess import InProcessEngine

    engine = InProcessEngine(
        str(model_dir), "tiny-qwen3", enforce_eager=True, max_model_len=4096, dtype="float32"
    )
    request = GenerationRequest([{"role": "user", "content": "What is 2+2?"}], "tiny-qwen3")
    spans: list[tuple[float, float]] = []

    def one(_: int):
        start = time.monotonic()
        result = engine.generate(request)
        spans.append((start, time.monotonic()))
        return result

    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, range(12)))
        loops = [t for t in threading.enumerate() if t.name == "vllm-loop"]
    finally:
        engine.close()
    assert len(loops) == 1
    assert all(r.finish_reason == "stop" for r in results)
    assert all(
        r.content.startswith(" The answer is \\boxed{") and r.reasoning.startswith("Okay, let me")
        for r in results
    )
    assert all(r.completion_tokens == SCRIPT_TOKENS_WITHOUT_HMM + r.reasoning.count(" hmm") for r in results)
    assert len({r.reasoning + r.content for r in results}) > 1
    latest_start = max(s for s, _ in spans)
    assert sum(1 for s, e in spans if s <= latest_start <= e) > 1, "generations were in flight together"


def test_a_campaign_on_a_worker_with_the_in_process_engine(
    model_dir: Path, postgres_admin, template_db, redis_available, tmp_path
) -> None:
    problems = tmp_path / "three.jsonl"
    problems.write_text("".join(shared_file("aime_2024.jsonl").read_text().splitlines(keepends=True)[:3]))
    with running_fleet(
        postgres_admin, template_db, redis_available, "", "tiny-qwen3", tmp_path, workers=0
    ) as fleet:
        fleet.start(
            "inprocess-worker",
            "worker",
            "--model-path",
            str(model_dir),
            "--model",
            "tiny-qwen3",
            "--max-model-len",
            "4096",
            "--concurrency",
            "8",
        )
        fleet.submit(problems, "--preset", "low", "--samples", "2")
        status = fleet.wait_finished("three", timeout=300)
        rows = fleet.query("SELECT reasoning, completion_tokens FROM trajectory")
        answers = fleet.query("SELECT answer FROM run")
    assert status["runs"] == {"total": 6, "done": 6}, f"logs in {tmp_path}"
    assert len(rows) == 30 and all(c == SCRIPT_TOKENS_WITHOUT_HMM + r.count(" hmm") for r, c in rows)
    assert {a for (a,) in answers} <= {"204", "25", "809"}
