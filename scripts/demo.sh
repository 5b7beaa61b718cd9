#!/usr/bin/env bash
# The demo: SIGMA and VideoMAE pretraining, then the same probes of both and of a random
# encoder, on a laptop-class CPU in about five minutes.
#
#   python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && bash scripts/demo.sh
#
# 1. writes a small synthetic video dataset of real H.264 files whose 8 classes are a
#    kind of object (shape and texture) together with how it moves (slides or spins)
#    (scripts/make_synthetic_videos.py; skipped if DATA has a train.csv),
# 2. pretrains a tiny SIGMA-MLP model (ViT-Tiny encoder, learned MLP projection,
#    Sinkhorn-balanced prototypes) on 8-frame 96x96 clips (run_sigma_pretraining.py),
# 3. pretrains the same encoder with VideoMAE's pixel target: same data, clips, masks,
#    optimiser, learning rate and number of steps,
# 4. prints both runs' summaries: loss per epoch and, for SIGMA, the collapse
#    diagnostics (prototype usage, Sinkhorn's max q, the projection's and the encoder's
#    feature cosine and effective rank, target accuracy beside its majority baseline),
# 5. linear-probes (test videos) and k-NN-classifies (val videos) the encoders of a random
#    initialisation, SIGMA and VideoMAE with one protocol, and prints the table beside
#    chance (scripts/demo_linear_probe.py), and draws the runs' curves and the table in
#    DEMO_DIR/demo.png (scripts/plot_log.py).
#
# Environment:
#   SEED [0]            seeds the videos (make_synthetic_videos.py --seed), the
#                       pretraining runs and the probes
#   DEMO_EPOCHS [12]    pretraining epochs of 20 steps (batch 16); 12 take about 80 s
#                       (SIGMA) and 60 s (VideoMAE) on 2 cores; more is the longer version
#   DEMO_DIR [demo_output]  where everything is written
#   DATA [DEMO_DIR/data]    any directory with train.csv, val.csv and test.csv (VideoMAE
#                       clip lists, paths relative to it, labels from 0) runs the same
#                       steps on your videos
#   PYTHON [.venv/bin/python, else python3]
# A second run with the same DEMO_DIR finds the finished pretraining runs and repeats
# only the probes; delete DEMO_DIR/pretrain_* to train again.
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
DEMO_EPOCHS=${DEMO_EPOCHS:-12}
DEMO_DIR=${DEMO_DIR:-demo_output}
DATA=${DATA:-${DEMO_DIR}/data}
SIGMA_RUN="${DEMO_DIR}/pretrain_sigma_mlp"
PIXEL_RUN="${DEMO_DIR}/pretrain_videomae_pixel"
for value in "${SEED}" "${DEMO_EPOCHS}"; do
    [[ "${value}" =~ ^[0-9]+$ ]] || { echo "SEED and DEMO_EPOCHS must be whole numbers, got '${value}'" >&2; exit 2; }
done
[ "${DEMO_EPOCHS}" -ge 1 ] || { echo "DEMO_EPOCHS must be at least 1" >&2; exit 2; }
start=${SECONDS}

echo "== 1/5 videos in ${DATA} (about 15 s)"
if [ -f "${DATA}/train.csv" ]; then
    echo "train.csv is there: using these videos"
else
    # 25 test videos per class (not 10): on 200 test videos one video is half a point.
    "${PYTHON}" scripts/make_synthetic_videos.py --out "${DATA}" --test_per_class 25 --seed "${SEED}"
fi

# The published recipe at toy scale: tube masking at 0.9, AdamW (0.9, 0.95), weight decay
# 0.05, lr 1.5e-4 per 256 clips, the published share of warm-up (40 of 800 epochs, here
# at least one epoch), a 6 x 6 x 4 token grid (8 frames of 96 px) and fewer prototypes
# for the small dataset. PRETRAIN.md ("The demo's settings") has the runs behind these
# choices: higher learning rates collapse SIGMA's projection within tens of steps.
BUDGET=(--model pretrain_videomae_tiny_patch16_224 --input_size 96 --num_frames 8 --sampling_rate 4
        --mask_type tube --mask_ratio 0.9 --batch_size 16 --epochs "${DEMO_EPOCHS}"
        --warmup_epochs "$(( (DEMO_EPOCHS + 19) / 20 ))" --lr 1.5e-4 --min_lr 1e-5
        --num_workers 2 --print_freq 20 --save_ckpt_freq "${DEMO_EPOCHS}" --seed "${SEED}")

pretrain() {  # OUTPUT_DIR FLAGS...: full log in OUTPUT_DIR/train.log, the per-step lines on screen
    local out=$1
    shift
    mkdir -p "${out}"
    "${PYTHON}" run_sigma_pretraining.py --data_path "${DATA}" --data_path_csv "${DATA}/train.csv" \
        "${BUDGET[@]}" "$@" --output_dir "${out}" 2>&1 \
        | tee -a "${out}/train.log" | grep --line-buffered -E "^(Epoch|global batch|pretraining done|nothing)"
}

echo "== 2/5 pretraining a tiny SIGMA-MLP model for ${DEMO_EPOCHS} epochs (about $(( DEMO_EPOCHS * 7 )) s; full log: ${SIGMA_RUN}/train.log)"
pretrain "${SIGMA_RUN}" --target_type mlp --loss_func SWAV --num_prototypes 64

echo "== 3/5 pretraining the same encoder with VideoMAE's pixel target, same budget (about $(( DEMO_EPOCHS * 5 )) s; full log: ${PIXEL_RUN}/train.log)"
pretrain "${PIXEL_RUN}" --target_type pixel --loss_func L2

echo "== 4/5 pretraining summaries"
"${PYTHON}" scripts/summarize_pretraining.py "${SIGMA_RUN}"
"${PYTHON}" scripts/summarize_pretraining.py "${PIXEL_RUN}"

echo "== 5/5 linear probe and k-NN of a random initialisation, SIGMA and VideoMAE (about 90 s)"
"${PYTHON}" scripts/demo_linear_probe.py --data "${DATA}" --sigma "${SIGMA_RUN}" --videomae "${PIXEL_RUN}" \
    --output_dir "${DEMO_DIR}/probes" --seed "${SEED}"
"${PYTHON}" scripts/plot_log.py "${SIGMA_RUN}" "${PIXEL_RUN}" --probes "${DEMO_DIR}/probes/results.json" \
    --out "${DEMO_DIR}/demo.png"
echo "demo finished in $(( SECONDS - start )) s"
echo "pictures of what both models predict: bash scripts/make_docs_pictures.sh ${DEMO_DIR} (PRETRAIN.md, \"Looking at what a model predicts\")"
