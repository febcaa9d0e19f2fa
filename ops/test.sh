#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one: builds what it needs, then runs everything.
#
#   ops/test.sh                 # lint, types, import contract, in-process engine tests, then the main suite
#   ops/test.sh tests/unit      # extra arguments go to the main pytest run (and skip the engine-venv step)
#
# Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (see README); under CI=true a missing
# service fails the tests instead of skipping them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' >&2 || true
.venv/bin/python -c "import pacore.cli"

echo "== ruff, mypy, import contract"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports

if [ $# -eq 0 ]; then
  echo "== engine venv and tiny model"
  engine_python="$(bash ops/engine/bootstrap.sh | sed -n 1p)"  # sed reads it all: no SIGPIPE under pipefail
  echo "== in-process engine tests (engine venv)"
  # The engine venv is one per machine and its editable pacore may be another checkout's: this one's
  # code comes first on the path (and in the pacore processes the test starts).
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$engine_python" -m pytest tests/inprocess -p no:cacheprovider -q
fi

echo "== main suite"
[ $# -gt 0 ] || set -- tests/unit tests/integration tests/e2e tests/chaos
exec .venv/bin/python -m pytest "$@" -q --durations=15  # the slowest, to keep CI within its time
