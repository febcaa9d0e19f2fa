#!/usr/bin/env bash
# The quick start on a CPU-only machine: solve real AIME 2024 problems with PaCoRe on the embedded
# PostgreSQL, the database as broker, and a real vLLM server (CPU build) serving the tiny scripted model.
#
#   ops/quickstart.sh [PROBLEMS.jsonl] [pacore run options...]
#
# Builds what is missing (pacore's venv in .venv, the engine venv and the tiny model under
# ~/.cache/pacore), starts the engine on a free port, runs `pacore run`, and stops the engine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-python3}"
problems="${1:-ops/examples/aime_2024_sample.jsonl}"
shift || true
[ $# -gt 0 ] || set -- --preset low --samples 2

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q -e . 2>&1 | grep -v '^WARNING: Location' >&2 || true
echo "building (or reusing) the CPU vLLM engine and the tiny model..." >&2
bash ops/engine/bootstrap.sh >/dev/null

port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp -t pacore-engine.XXXXXX.log)"
setsid bash ops/engine/serve.sh "$port" >"$log" 2>&1 &
engine=$!
trap 'kill -TERM -- -$engine 2>/dev/null || true; wait $engine 2>/dev/null || true' EXIT
echo "starting the engine on port $port (log: $log)..." >&2
for _ in $(seq 240); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  kill -0 "$engine" 2>/dev/null || { echo "the engine did not start; see $log" >&2; exit 1; }
  sleep 1
done

.venv/bin/pacore run "$problems" --engine-url "http://127.0.0.1:$port" "$@"
