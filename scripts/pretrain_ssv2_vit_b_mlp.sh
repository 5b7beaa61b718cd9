#!/usr/bin/env bash
# SIGMA-MLP, ViT-B, Something-Something V2, 800 epochs (paper: 70.4 fine-tuned).
# Usage (see scripts/pretrain_common.sh for the variables):
#   DATA_PATH=... DATA_PATH_CSV=... bash scripts/pretrain_ssv2_vit_b_mlp.sh [flags]
set -euo pipefail
source "$(dirname "$0")/pretrain_common.sh"
pretrain "${MLP_FLAGS[@]}" \
    --model pretrain_videomae_base_patch16_224 \
    --batch_size 32 \
    --sampling_rate 2 \
    --sinkhorn_eps 0.03 \
    --epochs 801 \
    --save_ckpt_freq 5 \
    "$@"
