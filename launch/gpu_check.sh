#!/usr/bin/env bash
# GPU check for a machine with only torch (CUDA) + transformers, no vllm/ray/verl (issue #13):
# learner update on CUDA == CPU update on the same batch (fp32 tight, bf16 within tolerance), and the
# credit / estimator math on CUDA at B=1024, T=4096, S=32 == CPU, with timings. <= 5 minutes.
# Last line: PASS or FAIL (exit 0 / 1). See launch/gpu_check.py.
#
#   bash launch/gpu_check.sh                 # on the GPU machine
#   bash launch/gpu_check.sh --cpu           # dry run on a CPU-only machine (same checks, device = cpu)
#   bash launch/gpu_check.sh --cpu --small   # quick dry run (small credit sizes)
# Python: $RL_PRM_PYTHON, else the repo's .venv/bin/python, else python3.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${RL_PRM_PYTHON:-}" ]; then
  PY="$RL_PRM_PYTHON"
elif [ -x "$REPO/.venv/bin/python" ]; then
  PY="$REPO/.venv/bin/python"
else
  PY="$(command -v python3 || true)"
fi
[ -n "$PY" ] || { echo "gpu_check: no python"; echo "FAIL"; exit 1; }
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error   # the tiny policy is built offline (rl_prm.tiny)
timeout 330 "$PY" "$REPO/launch/gpu_check.py" "$@"
rc=$?
if [ "$rc" = 124 ]; then echo "gpu_check: over 330 s, stopped"; echo "FAIL"; fi
exit "$rc"
