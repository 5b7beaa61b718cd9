#!/usr/bin/env bash
# The demo's comparison over seeds: scripts/demo.sh once per seed (new videos, new
# pretraining, new probes each time), then the mean and spread of every accuracy.
#
#   bash scripts/demo_seeds.sh                       # seeds 0 1 2: 35 min on 2 cores, partly busy
#   SEEDS="0 1 2 3 4" DEMO_EPOCHS=12 bash scripts/demo_seeds.sh
#
# Environment: SEEDS ["0 1 2"], OUT [demo_seeds] (a run per seed in OUT/seed_N), and
# what scripts/demo.sh reads (DEMO_EPOCHS, DATA, PYTHON). With DATA set every seed
# uses those videos, and the spread is that of the training and the probes alone.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
[ -x "${PYTHON}" ] || PYTHON=python3
SEEDS=${SEEDS:-0 1 2}
OUT=${OUT:-demo_seeds}
dirs=()
for seed in ${SEEDS}; do
    echo "==== seed ${seed}: DEMO_DIR=${OUT}/seed_${seed}"
    SEED=${seed} DEMO_DIR="${OUT}/seed_${seed}" PYTHON="${PYTHON}" bash scripts/demo.sh
    dirs+=("${OUT}/seed_${seed}")
done
"${PYTHON}" scripts/summarize_demo_seeds.py "${dirs[@]}" | tee "${OUT}/summary.txt"
