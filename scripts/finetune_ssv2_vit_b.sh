#!/usr/bin/env bash
# Fine-tune a ViT-B on Something-Something V2, 40 epochs on 8 GPUs (paper, SSv2-pretrained:
# SIGMA-DINO 70.9, SIGMA-MLP 70.4, VideoMAE 69.6 top-1). Two-frame-per-segment TSN sampling,
# no flips (direction is the label), 2 x 3 test views. FINETUNE.md shows what it prints.
# Usage (see scripts/finetune_common.sh for the variables):
#   DATA_PATH=... MODEL_PATH=... bash scripts/finetune_ssv2_vit_b.sh [flags]
set -euo pipefail
source "$(dirname "$0")/finetune_common.sh"
finetune \
    --data_set SSV2 \
    --nb_classes 174 \
    --batch_size 4 \
    --num_sample 1 \
    --lr 1e-3 \
    --warmup_lr 1e-6 \
    --epochs 40 \
    --save_ckpt_freq 100 \
    --test_num_segment 2 \
    --test_num_crop 3 \
    "$@"
