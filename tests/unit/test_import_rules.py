"""Import rules: the pure core does no I/O (import-linter), and the CLI loads the control plane lazily."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 kept, 0 broken" in result.stdout


def test_cli_imports_neither_scheduler_nor_worker_nor_celery() -> None:
    code = "import sys, pacore.cli; print(sorted(m for m in ('scheduler', 'worker', 'celery', 'httpx') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
