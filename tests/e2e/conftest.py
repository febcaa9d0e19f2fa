"""End to end: a real vLLM OpenAI-compatible server (CPU build) serving a tiny scripted Qwen3 built at
test time. Started once per test session; the engine venv is built by ops/engine/bootstrap.sh when
missing (and reused when present)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port, unavailable
from tests.fleet import Fleet, running_fleet

MODEL = "tiny-qwen3"
STARTUP_SECONDS = 240


@dataclass
class VllmServer:
    url: str
    model: str
    model_dir: Path
    python: str

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(float(v) for v in re.findall(rf"^{re.escape(name)}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M))


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory) -> Iterator[VllmServer]:
    logs = tmp_path_factory.mktemp("vllm")
    built = subprocess.run(
        ["bash", str(REPO / "ops/engine/bootstrap.sh")], capture_output=True, text=True, timeout=1800
    )
    if built.returncode != 0:
        unavailable(f"the CPU vLLM engine (bootstrap failed: {built.stderr[-2000:]})")
    python, model_dir = built.stdout.split()
    port = free_port()
    log = (logs / "server.log").open("w")
    server = subprocess.Popen(
        ["bash", str(REPO / "ops/engine/serve.sh"), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            os.killpg(server.pid, 9)
            unavailable(f"the vLLM server (see {logs / 'server.log'})")
        time.sleep(1)
    try:
        yield VllmServer(url, MODEL, Path(model_dir), python)
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)


@pytest.fixture(scope="session")
def vllm_fleet(
    postgres_admin, template_db, redis_available, vllm_server, tmp_path_factory
) -> Iterator[Fleet]:
    logs = tmp_path_factory.mktemp("vllm-fleet")
    with running_fleet(
        postgres_admin,
        template_db,
        redis_available,
        vllm_server.url,
        vllm_server.model,
        logs,
        workers=2,
        concurrency=32,
        # The fleets of the scripted engine read with a 2 s timeout, to test timeouts quickly; the CPU vLLM
        # serving 64 streams on this box's shared cores may send nothing for longer (a burst of long
        # prompts to prefill), and a cut stream is charged what it may have generated unseen.
        extra_env={"PACORE_ENGINE_TIMEOUT": "60"},
    ) as fleet:
        yield fleet
