#!/usr/bin/env bash
# Serve the tiny scripted model with the CPU vLLM OpenAI-compatible server (foreground).
#
#   ops/engine/serve.sh [PORT]          # default port 8000, served model name "tiny-qwen3"
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${1:-8000}"
mapfile -t built < <("$here/bootstrap.sh")
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" VLLM_CPU_NUM_OF_RESERVED_CPU=0 HF_HUB_OFFLINE=1
exec "${built[0]}" -m vllm.entrypoints.openai.api_server --model "${built[1]}" --served-model-name tiny-qwen3 \
  --host 127.0.0.1 --port "$port" --enforce-eager --max-model-len 4096 --enable-prefix-caching \
  --reasoning-parser qwen3 --dtype float32
