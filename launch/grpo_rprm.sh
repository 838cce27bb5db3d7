#!/usr/bin/env bash
# Launch an rl-prm training run from a recipe; what users submit to a Ray cluster:
#
#   ray job submit --address http://HEAD:8265 --working-dir . \
#       --runtime-env-json '{"excludes": [".venv", "runs", "data"], "env_vars": {"RL_PRM_PYTHON": "/path/to/venv/bin/python"}}' \
#       -- bash launch/grpo_rprm.sh RECIPE [key=value ...]
#
#   bash launch/grpo_rprm.sh RECIPE [key=value ...] --dry-run   # print the command, run nothing
#
# The backend comes from the recipe (trainer.backend):
#   verl  -> python3 -m verl.trainer.main_ppo <overrides> (rl_prm.backends.verl_backend builds them;
#            verl joins the cluster through RAY_ADDRESS, which `ray job submit` sets)
#   local -> python -m rl_prm train RECIPE <overrides> (one node; joins RAY_ADDRESS too)
# Python: $RL_PRM_PYTHON, else the repo's .venv/bin/python, else (under `ray job submit`) the python running
# the job supervisor when it has rl_prm, else python3. A `trainer.device: cpu` verl recipe runs verl on CPU.
set -euo pipefail

usage() { echo "usage: bash launch/grpo_rprm.sh RECIPE [key=value ...] [--dry-run]" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY=0
ARGS=()
for a in "$@"; do
  case "$a" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) ARGS+=("$a") ;;
  esac
done
[ "${#ARGS[@]}" -ge 1 ] || usage
RECIPE="${ARGS[0]}"
OVERRIDES=("${ARGS[@]:1}")
[ -f "$RECIPE" ] || { echo "grpo_rprm.sh: recipe not found: $RECIPE" >&2; exit 2; }

if [ -n "${RL_PRM_PYTHON:-}" ]; then
  PY="$RL_PRM_PYTHON"
elif [ -x "$REPO/.venv/bin/python" ]; then
  PY="$REPO/.venv/bin/python"
else
  PY=""
  if [ -n "${RAY_ADDRESS:-}" ]; then
    # under `ray job submit` (the working dir is a copy without .venv): the environment Ray itself runs
    # from, found through the raylet among this shell's ancestors (<env>/lib/pythonX/site-packages/ray/...
    # -> <env>/bin/python), when it has rl_prm (issue #13)
    pid=$PPID
    for _ in 1 2 3 4 5 6; do
      exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
      case "$exe" in
        */lib/python*/site-packages/ray/*)
          cand="${exe%%/lib/python*}/bin/python"
          if [ -x "$cand" ] && "$cand" -c "import ray, rl_prm" 2>/dev/null; then PY="$cand"; fi
          break ;;
      esac
      pid="$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || echo 1)"
      [ "$pid" -gt 1 ] 2>/dev/null || break
    done
  fi
  [ -n "$PY" ] || PY="$(command -v python3 || true)"
fi
[ -n "$PY" ] && "$PY" -c "import sys" 2>/dev/null || { echo "grpo_rprm.sh: no usable python (set RL_PRM_PYTHON)" >&2; exit 2; }

cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export WANDB_MODE="${WANDB_MODE:-offline}"
# Under `ray job submit` the job's runtime env (--runtime-env-json env_vars, working_dir) must merge
# with the runtime env that the trainer's own ray.init passes (verl's and the local backend's set env
# vars too); without this Ray refuses any key set in both ("Failed to merge the Job's runtime env").
export RAY_OVERRIDE_JOB_RUNTIME_ENV="${RAY_OVERRIDE_JOB_RUNTIME_ENV:-1}"

BACKEND="$("$PY" -m rl_prm.backends.verl_backend --recipe "$RECIPE" "${OVERRIDES[@]}" --backend)"
case "$BACKEND" in
  verl)
    # verl imports our plugin (estimators, reward manager) in every process it starts
    export VERL_USE_EXTERNAL_MODULES="rl_prm.verl_plugin${VERL_USE_EXTERNAL_MODULES:+,$VERL_USE_EXTERNAL_MODULES}"
    if [ "$DRY" = 1 ]; then
      exec "$PY" -m rl_prm.backends.verl_backend --recipe "$RECIPE" "${OVERRIDES[@]}" --print --python "$PY"
    fi
    exec "$PY" -m rl_prm.backends.verl_backend --recipe "$RECIPE" "${OVERRIDES[@]}"
    ;;
  local)
    CMD=("$PY" -m rl_prm train "$RECIPE" "${OVERRIDES[@]}")
    if [ "$DRY" = 1 ]; then
      printf '%q ' "${CMD[@]}"; echo
      exit 0
    fi
    exec "${CMD[@]}"
    ;;
  *)
    echo "grpo_rprm.sh: unknown trainer.backend '$BACKEND' in $RECIPE (expected verl or local)" >&2
    exit 2
    ;;
esac
