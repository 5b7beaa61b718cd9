#!/usr/bin/env bash
# The demo: does pretraining help? SIGMA and VideoMAE pretraining, a supervised ceiling and a
# random floor, the same probes of all four, on a laptop-class CPU in about eight minutes.
#
#   python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && bash scripts/demo.sh
#
# 1. writes a synthetic video dataset of real H.264 files whose 6 classes are a kind of
#    object (a bar or a triangle) together with how it moves (slides, spins or pulses), with
#    far more unlabelled videos for pretraining (pretrain.csv) than labelled ones
#    (scripts/make_synthetic_videos.py; skipped if DATA has a train.csv),
# 2. pretrains a small encoder (ViT-Tiny's width, 4 blocks, 8 x 8 px patches of 64 px
#    frames) with VideoMAE's pixel target (run_sigma_pretraining.py),
# 3. pretrains the same encoder as SIGMA-MLP: same data, clips, masks, optimiser, learning
#    rate and number of steps,
# 4. trains the same encoder with the labels of train.csv from a random initialisation, end
#    to end, for as many steps (run_class_finetuning.py): the ceiling,
# 5. prints both pretraining runs' summaries: loss per epoch beside what learning nothing
#    gives and, for SIGMA, the collapse diagnostics (prototype usage, Sinkhorn's max q, the
#    projection's and the encoder's feature cosine and effective rank, target accuracy
#    beside its majority baseline),
# 6. linear-probes (test videos) and k-NN-classifies (val videos) the encoders of a random
#    initialisation, VideoMAE, SIGMA and the supervised run with one protocol, prints the
#    table beside chance (scripts/demo_linear_probe.py), and draws the runs' curves and the
#    table in DEMO_DIR/demo.png (scripts/plot_log.py).
# The settings (learning rate, mask ratio, patch, depth) are the ones the sweep in PRETRAIN.md
# ("The demo's data and settings") chose by one rule for both methods.
#
# Environment:
#   SEED [0]            seeds the videos (make_synthetic_videos.py --seed), the
#                       training runs and the probes
#   DEMO_EPOCHS [3]     pretraining epochs over pretrain.csv (batch 16); the supervised
#                       run takes as many steps; more is the longer version (README)
#   DEMO_DIR [demo_output]  where everything is written
#   DATA [DEMO_DIR/data]    any directory with train.csv, val.csv and test.csv (VideoMAE
#                       clip lists, paths relative to it, labels from 0) runs the same
#                       steps on your videos; pretraining reads pretrain.csv if it is there,
#                       else train.csv
#   PYTHON [.venv/bin/python, else python3]
# A second run with the same DEMO_DIR finds the finished training runs and repeats only
# the probes; delete DEMO_DIR/pretrain_* and DEMO_DIR/supervised to train again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
fi
if [ $# -gt 0 ]; then
    echo "scripts/demo.sh takes no arguments (got: $*); it reads SEED, DEMO_EPOCHS, DEMO_DIR, DATA, PYTHON" >&2
    exit 2
fi

PYTHON=${PYTHON:-.venv/bin/python}
[ -x "${PYTHON}" ] || PYTHON=python3
SEED=${SEED:-0}
DEMO_EPOCHS=${DEMO_EPOCHS:-3}
DEMO_DIR=${DEMO_DIR:-demo_output}
DATA=${DATA:-${DEMO_DIR}/data}
PIXEL_RUN="${DEMO_DIR}/pretrain_videomae_pixel"
SIGMA_RUN="${DEMO_DIR}/pretrain_sigma_mlp"
SUPERVISED_RUN="${DEMO_DIR}/supervised"
for value in "${SEED}" "${DEMO_EPOCHS}"; do
    [[ "${value}" =~ ^[0-9]+$ ]] || { echo "SEED and DEMO_EPOCHS must be whole numbers, got '${value}'" >&2; exit 2; }
done
[ "${DEMO_EPOCHS}" -ge 1 ] || { echo "DEMO_EPOCHS must be at least 1" >&2; exit 2; }
start=${SECONDS}

echo "== 1/6 videos in ${DATA} (about 30 s)"
if [ -f "${DATA}/train.csv" ]; then
    echo "train.csv is there: using these videos"
else
    # 25 test videos per class: on 150 test videos one video is 0.7 points.
    "${PYTHON}" scripts/make_synthetic_videos.py --out "${DATA}" --videos_per_class 50 --val_per_class 10 \
        --test_per_class 25 --pretrain_per_class 150 --frames 40 --seed "${SEED}"
fi
PRETRAIN_LIST="${DATA}/pretrain.csv"
[ -f "${PRETRAIN_LIST}" ] || PRETRAIN_LIST="${DATA}/train.csv"
count() { grep -c . "$1"; }

NB_CLASSES=$(( $(awk '{print $NF}' "${DATA}/train.csv" | sort -n | tail -1) + 1 ))

# The encoder and clips: ViT-Tiny's width with 4 blocks, 8 frames of 64 px in 8 x 8 patches (a
# 4 x 8 x 8 token grid). AdamW (0.9, 0.95), weight decay 0.05, one epoch of warm-up, a cosine to
# 1e-5, as published. Each method's learning rate and mask ratio (and, for SIGMA, whether to use
# SwAV's small-batch remedies) are the ones the sweep in PRETRAIN.md chose by one rule for both:
# the best validation k-NN on seed 0 among the settings that did not collapse.
GEOMETRY=(--model pretrain_videomae_tiny_patch16_224 --depth 4 --patch_size 8 --input_size 64 --num_frames 8
          --sampling_rate 4)
BUDGET=(--mask_type tube --batch_size 16 --epochs "${DEMO_EPOCHS}" --warmup_epochs 1 --min_lr 1e-5
        --num_workers 2 --save_ckpt_freq "${DEMO_EPOCHS}" --seed "${SEED}")
PRETRAIN_STEPS_PER_EPOCH=$(( $(count "${PRETRAIN_LIST}") / 16 ))
STEPS=$(( DEMO_EPOCHS * PRETRAIN_STEPS_PER_EPOCH ))
PIXEL_FLAGS=(--target_type pixel --loss_func L2 --mask_ratio 0.9 --lr 1e-3)
# SIGMA with SwAV's small-batch remedies, as the sweep ran them: Sinkhorn epsilon 0.03, prototypes
# still through the first epoch, a queue of 16 x (steps per epoch) tubes from the second half on.
SIGMA_FLAGS=(--target_type mlp --loss_func SWAV --num_prototypes 64 --mask_ratio 0.9 --lr 5e-4 --sinkhorn_eps 0.03
             --freeze_prototypes_niters "${PRETRAIN_STEPS_PER_EPOCH}" --queue_length $(( 16 * PRETRAIN_STEPS_PER_EPOCH ))
             --queue_start_epoch $(( DEMO_EPOCHS / 2 > 1 ? DEMO_EPOCHS / 2 : 1 )))

pretrain() {  # OUTPUT_DIR FLAGS...: full log in OUTPUT_DIR/train.log, the per-step lines on screen
    local out=$1
    shift
    mkdir -p "${out}"
    "${PYTHON}" run_sigma_pretraining.py --data_path "${DATA}" --data_path_csv "${PRETRAIN_LIST}" \
        "${GEOMETRY[@]}" "${BUDGET[@]}" "$@" --output_dir "${out}" 2>&1 \
        | tee -a "${out}/train.log" | grep --line-buffered -E "^(Epoch|global batch|pretraining done|nothing)"
}

echo "== 2/6 pretraining with VideoMAE's pixel target, ${STEPS} steps (full log: ${PIXEL_RUN}/train.log)"
pretrain "${PIXEL_RUN}" "${PIXEL_FLAGS[@]}"

echo "== 3/6 pretraining the same encoder as SIGMA-MLP, same number of steps (full log: ${SIGMA_RUN}/train.log)"
pretrain "${SIGMA_RUN}" "${SIGMA_FLAGS[@]}"

echo "== 4/6 the ceiling: the same encoder trained with the labels from a random initialisation (full log: ${SUPERVISED_RUN}/train.log)"
mkdir -p "${SUPERVISED_RUN}"
# As many steps as each pretraining run, rounded up to whole epochs of train.csv.
TRAIN_STEPS_PER_EPOCH=$(( $(count "${DATA}/train.csv") / 16 ))
SUPERVISED_EPOCHS=$(( (STEPS + TRAIN_STEPS_PER_EPOCH - 1) / TRAIN_STEPS_PER_EPOCH ))
echo "${SUPERVISED_EPOCHS} epochs of ${TRAIN_STEPS_PER_EPOCH} steps"
# No mixup, cutmix, RandAugment or erasing: they slow a from-scratch model down at this budget. The
# learning rate is the top of the sweep's grid: lower ones left a from-scratch model at chance even
# longer (PRETRAIN.md).
"${PYTHON}" run_class_finetuning.py --data_set custom --nb_classes "${NB_CLASSES}" --data_path "${DATA}" \
    --model vit_tiny_patch16_224 --depth 4 --patch_size 8 --input_size 64 --short_side_size 64 --num_frames 8 \
    --sampling_rate 4 --mixup 0 --cutmix 0 --aa none --reprob 0 --num_sample 1 --batch_size 16 \
    --epochs "${SUPERVISED_EPOCHS}" --warmup_epochs 1 \
    --lr 5e-3 --layer_decay 1.0 --drop_path 0 --disable_eval_during_finetuning --test_num_segment 2 \
    --test_num_crop 1 --save_ckpt_freq "${SUPERVISED_EPOCHS}" --num_workers 2 --seed "${SEED}" \
    --output_dir "${SUPERVISED_RUN}" 2>&1 | tee -a "${SUPERVISED_RUN}/train.log" \
    | grep --line-buffered -E "^(Epoch \[[0-9]+/[0-9]+\] \[ *[0-9]+/[0-9]+\]|test: )"

echo "== 5/6 pretraining summaries"
"${PYTHON}" scripts/summarize_pretraining.py "${PIXEL_RUN}"
"${PYTHON}" scripts/summarize_pretraining.py "${SIGMA_RUN}"

echo "== 6/6 linear probe and k-NN of a random initialisation, VideoMAE, SIGMA and the supervised encoder"
"${PYTHON}" scripts/demo_linear_probe.py --data "${DATA}" --sigma "${SIGMA_RUN}" --videomae "${PIXEL_RUN}" \
    --supervised "${SUPERVISED_RUN}" --output_dir "${DEMO_DIR}/probes" --seed "${SEED}"
"${PYTHON}" scripts/plot_log.py "${PIXEL_RUN}" "${SIGMA_RUN}" --probes "${DEMO_DIR}/probes/results.json" \
    --out "${DEMO_DIR}/demo.png"
echo "demo finished in $(( SECONDS - start )) s"
echo "pictures of what both models predict: bash scripts/make_docs_pictures.sh ${DEMO_DIR} (PRETRAIN.md, \"Looking at what a model predicts\")"
