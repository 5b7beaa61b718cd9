#!/usr/bin/env bash
# Unsupervised video object segmentation on the DAVIS 2017 val set with a frozen encoder, the
# paper's second benchmark (ViT-B mIoU: SIGMA-DINO 30.6, VideoMAE 27.2). FINETUNE.md
# ("Video object segmentation on DAVIS") says where to get DAVIS and what this prints.
# Usage:
#   DAVIS_ROOT=/data/DAVIS MODEL_PATH=hf://SMSD75/SIGMA/... OUTPUT_DIR=vos_sigma bash scripts/eval_vos_davis.sh [flags]
# Extra flags go to eval_vos.py (e.g. --overclustering 2, --device cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DAVIS_ROOT:?set DAVIS_ROOT to the DAVIS 2017 folder (JPEGImages/480p, Annotations/480p, ImageSets/2017)}"
: "${MODEL_PATH:?set MODEL_PATH to a pretraining or fine-tuned checkpoint (path or hf://OWNER/REPO/FILE)}"
: "${OUTPUT_DIR:?set OUTPUT_DIR to where the masks and scores.json go}"
PYTHON=${PYTHON:-python}
"${PYTHON}" eval_vos.py --davis_root "${DAVIS_ROOT}" --finetune "${MODEL_PATH}" --output_dir "${OUTPUT_DIR}" "$@" \
    2>&1 | tee "${OUTPUT_DIR%/}.log"
