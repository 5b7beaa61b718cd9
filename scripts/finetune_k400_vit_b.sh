#!/usr/bin/env bash
# Fine-tune a ViT-B on Kinetics-400, 75 epochs on 8 GPUs with 8 accumulated micro-batches (paper,
# K400-pretrained: SIGMA-DINO 81.6, SIGMA-MLP 80.2, VideoMAE 80.0 top-1). 16 frames at stride 4,
# 7 x 3 test views. FINETUNE.md shows what it prints.
# Usage (see scripts/finetune_common.sh for the variables):
#   DATA_PATH=... MODEL_PATH=... bash scripts/finetune_k400_vit_b.sh [flags]
set -euo pipefail
source "$(dirname "$0")/finetune_common.sh"
finetune \
    --data_set Kinetics-400 \
    --nb_classes 400 \
    --batch_size 4 \
    --update_freq 8 \
    --num_sample 1 \
    --sampling_rate 4 \
    --lr 1e-3 \
    --epochs 75 \
    --save_ckpt_freq 1 \
    --test_num_segment 7 \
    --test_num_crop 3 \
    --num_workers 8 \
    "$@"
