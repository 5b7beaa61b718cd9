#!/usr/bin/env bash
# Pictures of what a pretraining checkpoint predicts for one masked clip (the published vis.sh):
#
#   bash scripts/vis.sh VIDEO OUTPUT_DIR CHECKPOINT [more run_videomae_vis.py flags]
#
# The model, its clip geometry and its target come from CHECKPOINT; the mask is the
# published runs' tube mask at 0.9. PRETRAIN.md ("Looking at what a model predicts")
# shows what the pictures look like.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
    echo "usage: bash scripts/vis.sh VIDEO OUTPUT_DIR CHECKPOINT [run_videomae_vis.py flags]" >&2
    exit 2
fi
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "${PYTHON}" ] || PYTHON=python3
"${PYTHON}" run_videomae_vis.py "$1" "$2" "$3" --mask_type tube --mask_ratio 0.9 "${@:4}"
