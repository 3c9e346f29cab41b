#!/usr/bin/env bash
# The main job at a small default size, set-up included:
#   generate the pendulum data set -> train the VHP-EKVAE (CO) -> evaluate it
#   -> roll it out as a latent Gymnasium env.
# Idempotent: an existing data set is reused, a finished run is only re-evaluated.
# Usage: bash scripts/run_main.sh [RUN_DIR]   (default runs/main)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
run="${1:-runs/main}"
steps="${LATENTWORLD_MAIN_STEPS:-3000}"

if [ ! -f data/pendulum.npz ]; then
  python -m envs.generate pendulum --out data/pendulum.npz
else
  echo "[main] reusing data/pendulum.npz (delete it to regenerate)"
fi

resume=()
[ -f "$run/pendulum_ekvae/trainer_state.pt" ] && resume=(--resume)
latentworld train --config configs/pendulum_ekvae.yaml --set "steps=$steps" \
  --run-dir "$run/pendulum_ekvae" ${resume[@]+"${resume[@]}"}
latentworld evaluate "$run/pendulum_ekvae"
# The trained model as a Gymnasium env: imagined episodes under random actions, reward toward the
# upright pole (the goal image shipped with the pretrained checkpoint).
latentworld imagine "$run/pendulum_ekvae" --goal latentworld/pretrained/pendulum_ekvae/goal.png \
  --out "$run/pendulum_ekvae/imagined.png"
echo "[main] done: figures and eval.json in $run/pendulum_ekvae, data picture data/pendulum.png"
