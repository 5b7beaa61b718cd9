#!/usr/bin/env bash
# SIGMA-DINO, ViT-B, Something-Something V2, 800 epochs (paper: 70.9 fine-tuned).
# Published: 16 GPUs x 32 clips, eps 0.03. Usage (see scripts/pretrain_common.sh for the variables):
#   DATA_PATH=... DATA_PATH_CSV=... TEACHER_WEIGHTS=... bash scripts/pretrain_ssv2_vit_b_dino.sh [flags]
set -euo pipefail
source "$(dirname "$0")/pretrain_common.sh"
pretrain "${DINO_FLAGS[@]}" \
    --model pretrain_videomae_base_patch16_224 \
    --batch_size 32 \
    --sampling_rate 2 \
    --num_prototypes 3000 \
    --sinkhorn_eps 0.03 \
    --epochs 801 \
    --save_ckpt_freq 5 \
    "$@"
