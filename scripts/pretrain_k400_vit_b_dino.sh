#!/usr/bin/env bash
# SIGMA-DINO, ViT-B, Kinetics-400, 800 epochs (paper: 81.6 fine-tuned, 47.5 linear probe on K400).
# Published: 16 GPUs x 40 clips. Usage (see scripts/pretrain_common.sh for the variables):
#   DATA_PATH=... DATA_PATH_CSV=... TEACHER_WEIGHTS=... bash scripts/pretrain_k400_vit_b_dino.sh [flags]
set -euo pipefail
source "$(dirname "$0")/pretrain_common.sh"
pretrain "${DINO_FLAGS[@]}" \
    --model pretrain_videomae_base_patch16_224 \
    --batch_size 40 \
    --sampling_rate 4 \
    --num_prototypes 3000 \
    --sinkhorn_eps 0.05 \
    --epochs 801 \
    --save_ckpt_freq 5 \
    "$@"
