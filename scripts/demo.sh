#!/usr/bin/env bash
# The demo: SIGMA pretraining and linear probes on a laptop-class CPU, in about seven minutes.
#
#   python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && bash scripts/demo.sh
#
# 1. writes a small synthetic video dataset of real H.264 files whose classes differ
#    only by motion (scripts/make_synthetic_videos.py; skipped if DATA has a train.csv),
# 2. pretrains a tiny SIGMA-MLP model (ViT-Tiny encoder, learned MLP projection,
#    Sinkhorn-balanced prototypes) on 8-frame 96x96 clips (run_sigma_pretraining.py),
# 3. pretrains the same encoder with VideoMAE's pixel target, same data, clips,
#    masks, optimiser and number of steps,
# 4. prints what SIGMA's run did: the loss per epoch, how evenly the prototypes are
#    used, where the checkpoint and the TensorBoard logs are,
# 5. linear-probes the test videos with the SIGMA encoder, a random initialisation and
#    the VideoMAE encoder, and prints the three top-1 accuracies side by side
#    (scripts/demo_linear_probe.py; each probe is a run_class_finetuning.py command).
#
# Environment: DEMO_DIR [demo_output], EPOCHS [12], PYTHON [.venv/bin/python, else python3],
# DATA [DEMO_DIR/data]: any directory with train.csv, val.csv and test.csv (VideoMAE
# clip lists, paths relative to it, labels from 0) runs the same steps on your videos.
# A second run with the same DEMO_DIR finds the finished pretraining runs and repeats
# only the probes; delete DEMO_DIR/pretrain_* to train again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
[ -x "${PYTHON}" ] || PYTHON=python3
DEMO_DIR=${DEMO_DIR:-demo_output}
EPOCHS=${EPOCHS:-12}
DATA=${DATA:-${DEMO_DIR}/data}
SIGMA_RUN="${DEMO_DIR}/pretrain_sigma_mlp"
PIXEL_RUN="${DEMO_DIR}/pretrain_videomae_pixel"
start=${SECONDS}

echo "== 1/5 videos in ${DATA}"
if [ -f "${DATA}/train.csv" ]; then
    echo "train.csv is there: using these videos"
else
    # 25 test videos per class (not 10): the probes' accuracies are compared, and on 200
    # videos one video is half a point.
    "${PYTHON}" scripts/make_synthetic_videos.py --out "${DATA}" --test_per_class 25
fi

# The published recipe (tube masking at 0.9, AdamW, SWAV loss with Sinkhorn-Knopp) at
# toy scale: a 6 x 6 x 4 token grid (8 frames of 96 px), fewer prototypes for the small
# dataset, and a higher lr per 256 clips because a run of a few hundred steps has no
# time for the published 1.5e-4. Both pretrainings get exactly these settings.
BUDGET=(--model pretrain_videomae_tiny_patch16_224 --input_size 96 --num_frames 8 --sampling_rate 4
        --mask_type tube --mask_ratio 0.9 --batch_size 16 --epochs "${EPOCHS}" --warmup_epochs 1
        --lr 5e-3 --min_lr 1e-4 --num_workers 2 --print_freq 20 --save_ckpt_freq "${EPOCHS}")

pretrain() {  # OUTPUT_DIR FLAGS...: full log in OUTPUT_DIR/train.log, the per-step lines on screen
    local out=$1
    shift
    mkdir -p "${out}"
    "${PYTHON}" run_sigma_pretraining.py --data_path "${DATA}" --data_path_csv "${DATA}/train.csv" \
        "${BUDGET[@]}" "$@" --output_dir "${out}" 2>&1 \
        | tee -a "${out}/train.log" | grep --line-buffered -E "^(Epoch|global batch|pretraining done|nothing)"
}

echo "== 2/5 pretraining a tiny SIGMA-MLP model for ${EPOCHS} epochs on the CPU (full log: ${SIGMA_RUN}/train.log)"
pretrain "${SIGMA_RUN}" --target_type mlp --loss_func SWAV --num_prototypes 64

echo "== 3/5 pretraining the same encoder with VideoMAE's pixel target, same budget (full log: ${PIXEL_RUN}/train.log)"
pretrain "${PIXEL_RUN}" --target_type pixel --loss_func L2

echo "== 4/5 SIGMA pretraining summary"
"${PYTHON}" scripts/summarize_pretraining.py "${SIGMA_RUN}"

echo "== 5/5 linear probes: SIGMA vs a random initialisation vs VideoMAE"
"${PYTHON}" scripts/demo_linear_probe.py --data "${DATA}" --sigma "${SIGMA_RUN}" --videomae "${PIXEL_RUN}" \
    --output_dir "${DEMO_DIR}/probes"
echo "demo finished in $(( SECONDS - start )) s"
