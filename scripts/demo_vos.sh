#!/usr/bin/env bash
# The demo's optional last stage: unsupervised video object segmentation of synthetic videos
# with the encoders of a random initialisation, SIGMA and VideoMAE, mIoU side by side.
#
#   bash scripts/demo.sh && bash scripts/demo_vos.sh      # after the demo, same DEMO_DIR
#
# 1. writes the demo's val videos again (same SEED, same frames) with their two objects'
#    masks in the DAVIS-2017 layout (scripts/make_synthetic_videos.py --davis; skipped if
#    DEMO_DIR/davis has ImageSets/2017/val.txt),
# 2. segments them with eval_vos.py (per-clip k-means of the frozen encoder's patch
#    tokens, Hungarian matching to the objects) for the three encoders: the newest
#    checkpoints of DEMO_DIR/pretrain_sigma_mlp and DEMO_DIR/pretrain_videomae_pixel, and
#    a random encoder of the same size, and prints J, F and mIoU of each.
#
# Environment: DEMO_DIR [demo_output], SEED [0], PYTHON [.venv/bin/python, else python3],
#              VOS_VIDEOS [1] val videos per class to segment: 8 sequences of 48 frames take
#              about a minute per encoder on 2 cores (measured while other jobs ran)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
fi
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "${PYTHON}" ] || PYTHON=python3
DEMO_DIR=${DEMO_DIR:-demo_output}
SEED=${SEED:-0}
VOS_VIDEOS=${VOS_VIDEOS:-1}
DAVIS="${DEMO_DIR}/davis"
newest() {  # RUN_DIR: its newest checkpoint
    local checkpoint
    checkpoint=$(ls -t "$1"/checkpoint-*.pth 2>/dev/null | head -n 1)
    [ -n "${checkpoint}" ] || { echo "no checkpoint in $1: run scripts/demo.sh first (same DEMO_DIR)" >&2; exit 2; }
    echo "${checkpoint}"
}
SIGMA=$(newest "${DEMO_DIR}/pretrain_sigma_mlp")
VIDEOMAE=$(newest "${DEMO_DIR}/pretrain_videomae_pixel")

echo "== 1/2 synthetic videos with object masks in ${DAVIS}"
if [ ! -f "${DAVIS}/ImageSets/2017/val.txt" ]; then
    # The demo's videos (64 px, 40 frames); only the val split is rendered into DAVIS.
    "${PYTHON}" scripts/make_synthetic_videos.py --out "${DEMO_DIR}/vos_videos" --videos_per_class 1 --frames 40 \
        --val_per_class "${VOS_VIDEOS}" --test_per_class 0 --seed "${SEED}" --davis "${DAVIS}"
fi

echo "== 2/2 segmentation by random init, SIGMA and VideoMAE"
# The random encoder gets the pretrained runs' geometry (ViT-Tiny's width, 4 blocks, 8 frames of 64 px,
# 8 px patches).
RANDOM_INIT=(--model vit_tiny_patch16_224 --depth 4 --patch_size 8 --input_size 64 --num_frames 8
             --seed "${SEED}")
declare -A RESULT
for encoder in random_init sigma videomae; do
    case ${encoder} in
        random_init) flags=("${RANDOM_INIT[@]}") ;;
        sigma) flags=(--finetune "${SIGMA}") ;;
        videomae) flags=(--finetune "${VIDEOMAE}") ;;
    esac
    "${PYTHON}" eval_vos.py --davis_root "${DAVIS}" --output_dir "${DEMO_DIR}/vos/${encoder}" "${flags[@]}" \
        --device cpu > "${DEMO_DIR}/vos_${encoder}.log" 2>&1 || { tail -5 "${DEMO_DIR}/vos_${encoder}.log" >&2; exit 1; }
    RESULT[${encoder}]=$(tail -n 1 "${DEMO_DIR}/vos_${encoder}.log")
done
for encoder in random_init sigma videomae; do
    echo "${encoder} ${RESULT[${encoder}]}"
done | "${PYTHON}" -c '
import json, sys
print("%-12s %6s %6s %6s" % ("encoder", "J", "F", "mIoU"))
for line in sys.stdin:
    name, summary = line.split(" ", 1)
    r = json.loads(summary)
    print("%-12s %6.3f %6.3f %6.3f" % (name, r["J_mean"], r["F_mean"], r["mIoU"]))
'
