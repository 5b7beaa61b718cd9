#!/usr/bin/env bash
# SIGMA-MLP, ViT-B, Kinetics-400, 800 epochs (paper: 80.2 fine-tuned, 30.7 linear probe on K400).
# Usage (see scripts/pretrain_common.sh for the variables):
#   DATA_PATH=... DATA_PATH_CSV=... bash scripts/pretrain_k400_vit_b_mlp.sh [flags]
set -euo pipefail
source "$(dirname "$0")/pretrain_common.sh"
pretrain "${MLP_FLAGS[@]}" \
    --model pretrain_videomae_base_patch16_224 \
    --batch_size 40 \
    --sampling_rate 4 \
    --sinkhorn_eps 0.05 \
    --epochs 801 \
    --save_ckpt_freq 5 \
    "$@"
