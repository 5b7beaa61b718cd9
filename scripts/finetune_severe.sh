#!/usr/bin/env bash
# Fine-tune a ViT-B on one of the SEVERE benchmark's data sets (Thoker et al., ECCV 2022), as in
# SIGMA's SEVERE table: domain shift (Gym99), sample efficiency (UCF101 or Gym99 with
# EXAMPLES=1000 training videos), action granularity (FXS1, UBS1), plus HMDB51 and Diving48.
# The SIGMA repository publishes no script for these; this is VideoMAE's UCF101 recipe (lr 5e-4,
# layer decay 0.7, drop path 0.2, head dropout 0.5, 100 epochs, 5 x 3 test views).
# Usage (see scripts/finetune_common.sh for the other variables):
#   DATASET=GYM99 [EXAMPLES=1000] DATA_PATH=... MODEL_PATH=... bash scripts/finetune_severe.sh [flags]
set -euo pipefail
case "${DATASET:-}" in
    UCF101) CLASSES=101 ;;
    HMDB51) CLASSES=51 ;;
    Diving48) CLASSES=48 ;;
    GYM99) CLASSES=99 ;;
    FXS1) CLASSES=11 ;;
    UBS1) CLASSES=15 ;;
    *) echo "set DATASET to UCF101, HMDB51, Diving48, GYM99, FXS1 or UBS1" >&2; exit 2 ;;
esac
EXAMPLES=${EXAMPLES:-0}
OUTPUT_DIR=${OUTPUT_DIR:-output/finetune_severe_${DATASET}$([ "${EXAMPLES}" = 0 ] || echo "_${EXAMPLES}")}
source "$(dirname "$0")/finetune_common.sh"
finetune \
    --data_set "${DATASET}" \
    --nb_classes "${CLASSES}" \
    --examples "${EXAMPLES}" \
    --batch_size 8 \
    --num_sample 2 \
    --sampling_rate 4 \
    --lr 5e-4 \
    --warmup_lr 1e-8 \
    --min_lr 1e-5 \
    --layer_decay 0.7 \
    --drop_path 0.2 \
    --fc_drop_rate 0.5 \
    --epochs 100 \
    --save_ckpt_freq 50 \
    --test_num_segment 5 \
    --test_num_crop 3 \
    "$@"
