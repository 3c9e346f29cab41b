#!/usr/bin/env bash
# The whole test suite (set-up included): bash scripts/run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
python -m pytest tests "$@"
