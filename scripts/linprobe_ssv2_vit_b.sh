#!/usr/bin/env bash
# Linear probe of a frozen ViT-B on Something-Something V2, 30 epochs on 8 GPUs: only fc_norm and
# the head train, on augmented clips as published (paper, K400-pretrained: SIGMA-DINO 20.8,
# SIGMA-MLP 19.9, VideoMAE 17.5 top-1). FINETUNE.md shows what it prints, and the much faster
# probe on cached features (add --mixup 0 --cutmix 0 --aa none --reprob 0).
# Usage (see scripts/finetune_common.sh for the variables):
#   DATA_PATH=... MODEL_PATH=... bash scripts/linprobe_ssv2_vit_b.sh [flags]
set -euo pipefail
source "$(dirname "$0")/finetune_common.sh"
finetune \
    --linear_probing \
    --data_set SSV2 \
    --nb_classes 174 \
    --batch_size 24 \
    --num_sample 2 \
    --update_freq 2 \
    --lr 1e-3 \
    --warmup_lr 1e-6 \
    --epochs 30 \
    --save_ckpt_freq 100 \
    --test_num_segment 2 \
    --test_num_crop 3 \
    "$@"
