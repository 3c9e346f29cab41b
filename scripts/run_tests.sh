#!/usr/bin/env bash
# The whole test suite (set-up included): bash scripts/run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
# One worker per core (pytest-xdist): on 2 cores the suite takes 1–1.5 min instead of 1.5–2.
python -m pytest tests -n "${LATENTWORLD_TEST_WORKERS:-auto}" "$@"
