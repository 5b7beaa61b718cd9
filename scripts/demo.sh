#!/usr/bin/env bash
# The demo: SIGMA pretraining on a laptop-class CPU, in a few minutes.
#
#   python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && bash scripts/demo.sh
#
# 1. writes a small synthetic video dataset of real H.264 files whose classes differ
#    only by motion (scripts/make_synthetic_videos.py; skipped if it is already there),
# 2. pretrains a tiny SIGMA-MLP model (ViT-Tiny encoder, learned MLP projection,
#    Sinkhorn-balanced prototypes) on 16-frame 64x64 clips (run_sigma_pretraining.py),
# 3. prints what happened: the loss per epoch, how evenly the prototypes are used,
#    where the checkpoint and the TensorBoard logs are (scripts/summarize_pretraining.py).
#
# Environment: DEMO_DIR [demo_output], EPOCHS [5], PYTHON [.venv/bin/python, else python3].
# A second run with the same DEMO_DIR finds the finished run and only prints the summary;
# delete DEMO_DIR/pretrain_sigma_mlp to train again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
[ -x "${PYTHON}" ] || PYTHON=python3
DEMO_DIR=${DEMO_DIR:-demo_output}
EPOCHS=${EPOCHS:-5}
DATA="${DEMO_DIR}/data"
RUN="${DEMO_DIR}/pretrain_sigma_mlp"
start=${SECONDS}

echo "== 1/3 synthetic videos in ${DATA}"
if [ -f "${DATA}/train.csv" ]; then
    echo "already there"
else
    "${PYTHON}" scripts/make_synthetic_videos.py --out "${DATA}"
fi

echo "== 2/3 pretraining a tiny SIGMA-MLP model for ${EPOCHS} epochs on the CPU (full log: ${RUN}/train.log)"
mkdir -p "${RUN}"
# Published recipe (tube masking at 0.9, AdamW, SWAV loss with Sinkhorn-Knopp) at toy
# scale: fewer prototypes for the small dataset, and a higher lr per 256 clips
# because a run of a few hundred steps has no time for the published 1.5e-4.
"${PYTHON}" run_sigma_pretraining.py \
    --data_path "${DATA}" --data_path_csv "${DATA}/train.csv" \
    --model pretrain_videomae_tiny_patch16_224 --target_type mlp --loss_func SWAV \
    --input_size 64 --num_frames 16 --sampling_rate 2 \
    --mask_type tube --mask_ratio 0.9 --num_prototypes 64 \
    --batch_size 16 --epochs "${EPOCHS}" --warmup_epochs 1 --lr 5e-3 --min_lr 1e-4 \
    --num_workers 2 --print_freq 5 --save_ckpt_freq "${EPOCHS}" \
    --output_dir "${RUN}" 2>&1 | tee -a "${RUN}/train.log" | grep --line-buffered -v -E "^  [a-z0-9_]+: "

echo "== 3/3 summary"
"${PYTHON}" scripts/summarize_pretraining.py "${RUN}"
echo "demo finished in $(( SECONDS - start )) s"
