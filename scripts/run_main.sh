#!/usr/bin/env bash
# The main job at a small default size, set-up included:
#   generate the pendulum data set -> train the VHP-EKVAE (CO) -> evaluate it
#   -> roll it out as a latent Gymnasium env -> train a swing-up policy with J(ω) in the latent env only
#   -> run it in the real MuJoCo pendulum beside random and zero actions (returns printed, video written)
#   -> the reacher: a goal-conditioned reach policy trained in the latent env of the shipped joint-angle
#      model, run in the real reacher-easy (a new target every episode; its IK pose is the goal).
# Idempotent: an existing data set is reused, a finished run is only re-evaluated, a trained policy reused.
# Usage: bash scripts/run_main.sh [RUN_DIR]   (default runs/main)
#   LATENTWORLD_MAIN_STEPS     model training steps (default 2000, the length of the fast preset it trains)
#   LATENTWORLD_MAIN_MODEL     "trained" (default: the model this job trains) or "shipped" (pendulum_ekvae)
#   LATENTWORLD_MAIN_EPISODES  real evaluation episodes (default 20, seeds 5000...)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
run="${1:-runs/main}"
steps="${LATENTWORLD_MAIN_STEPS:-2000}"
episodes="${LATENTWORLD_MAIN_EPISODES:-20}"
case "${LATENTWORLD_MAIN_MODEL:-trained}" in
  trained) model="$run/pendulum_ekvae_fast" ;;
  shipped) model="pendulum_ekvae" ;;
  *) echo "[main] ERROR: LATENTWORLD_MAIN_MODEL must be 'trained' or 'shipped'" >&2; exit 2 ;;
esac

if [ ! -f data/pendulum.npz ]; then
  python -m envs.generate pendulum --out data/pendulum.npz
else
  echo "[main] reusing data/pendulum.npz (delete it to regenerate)"
fi

# The fast preset: identified in about 500-600 steps on every held-out seed measured (docs/engine.md).
resume=()
[ -f "$run/pendulum_ekvae_fast/run_config.yaml" ] && resume=(--resume)
latentworld train --config configs/pendulum_ekvae_fast.yaml --set "steps=$steps" \
  --run-dir "$run/pendulum_ekvae_fast" ${resume[@]+"${resume[@]}"}
latentworld evaluate "$run/pendulum_ekvae_fast"
# The trained model as a Gymnasium env: imagined episodes under random actions, reward toward the
# upright pole (the goal image shipped with the pretrained checkpoint).
latentworld imagine "$run/pendulum_ekvae_fast" --goal latentworld/pretrained/pendulum_ekvae/goal.png \
  --out "$run/imagined.png"

# A swing-up policy trained only in the latent env (J(ω)), then scored in the real env.
# One policy per model: another preset or a model trained further (a larger LATENTWORLD_MAIN_STEPS) gets
# its own policy, so a policy trained on an earlier main job's model is never reused for this one.
policy="$run/swingup_jomega_${LATENTWORLD_MAIN_MODEL:-trained}"
[ "${LATENTWORLD_MAIN_MODEL:-trained}" = trained ] && policy="${policy}_$(basename "$model")_${steps}steps"
if [ ! -f "$policy/meta.json" ]; then
  python -m agents train jomega --model "$model" --task swingup --out "$policy"
else
  echo "[main] reusing the policy $policy (delete it to retrain)"
fi
python -m agents evaluate "$policy" --episodes "$episodes"

# The reacher loop on the shipped model (training one takes ~6 min: scripts/bench_reacher.py). Its data
# set gives the policy's start states and training goals.
if [ ! -f data/reacher_angles.npz ]; then
  python -m envs.generate reacher_angles --out data/reacher_angles.npz
fi
# One policy per shipped model: a new release of the model (another digest) gets its own policy.
shipped_digest=$(sha256sum latentworld/pretrained/reacher_angles_ekvae/model.pt | cut -c1-12)
reach="$run/reach_jomega_shipped_${shipped_digest}"
if [ ! -f "$reach/meta.json" ]; then
  python -m agents train jomega --model reacher_angles_ekvae --task reach --out "$reach"
else
  echo "[main] reusing the policy $reach (delete it to retrain)"
fi
python -m agents evaluate "$reach" --episodes "$episodes"
echo "[main] done: model figures and eval.json in $run/pendulum_ekvae_fast/eval, imagined frames $run/imagined.png;" \
  "policies in $policy and $reach, each with real_eval/real_eval.json and real_eval/episode.gif;" \
  "data pictures data/pendulum.png, data/reacher_angles.png"
