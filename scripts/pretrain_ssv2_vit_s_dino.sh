#!/usr/bin/env bash
# SIGMA-DINO, ViT-S (DINO ViT-B teacher), Something-Something V2, 2400 epochs (paper: 68.6 fine-tuned).
# Published: 8 GPUs x 16 clips. Usage (see scripts/pretrain_common.sh for the variables):
#   DATA_PATH=... DATA_PATH_CSV=... TEACHER_WEIGHTS=... bash scripts/pretrain_ssv2_vit_s_dino.sh [flags]
set -euo pipefail
source "$(dirname "$0")/pretrain_common.sh"
pretrain "${DINO_FLAGS[@]}" \
    --model pretrain_videomae_small_patch16_224 \
    --batch_size 16 \
    --sampling_rate 2 \
    --num_prototypes 3000 \
    --sinkhorn_eps 0.05 \
    --epochs 2401 \
    --save_ckpt_freq 20 \
    "$@"
