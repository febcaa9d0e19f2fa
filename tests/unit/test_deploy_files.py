"""The deployment files in ops/deploy pass their offline validators, and the validators catch what
they are there to catch (a misspelt field)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DEPLOY = REPO / "ops" / "deploy"
BIN = Path(sys.executable).parent


def test_the_deployment_files_validate() -> None:
    done = subprocess.run(
        ["bash", str(DEPLOY / "validate.sh")],
        capture_output=True,
        text=True,
        env={"PATH": f"{BIN}:/usr/bin:/bin"},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deployment files valid" in done.stdout


def test_a_misspelt_field_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "keda.yaml"
    broken.write_text(
        (DEPLOY / "k8s/keda-scaledobject.yaml").read_text().replace("targetQueryValue", "targetValue")
    )
    keda = subprocess.run(
        [str(BIN / "check-jsonschema"), "--schemafile", str(DEPLOY / "schemas/keda.json"), str(broken)],
        capture_output=True,
        text=True,
    )
    assert keda.returncode != 0
    worker = tmp_path / "worker.yaml"
    shutil.copy(DEPLOY / "k8s/worker.yaml", worker)
    worker.write_text(worker.read_text().replace("terminationGracePeriodSeconds", "terminationGracePeriod"))
    k8s = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(worker)], capture_output=True, text=True
    )
    assert k8s.returncode != 0
