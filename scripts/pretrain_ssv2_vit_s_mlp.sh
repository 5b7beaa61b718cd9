#!/usr/bin/env bash
# SIGMA-MLP, ViT-S, Something-Something V2, 2400 epochs.
# Usage (see scripts/pretrain_common.sh for the variables):
#   DATA_PATH=... DATA_PATH_CSV=... bash scripts/pretrain_ssv2_vit_s_mlp.sh [flags]
set -euo pipefail
source "$(dirname "$0")/pretrain_common.sh"
pretrain "${MLP_FLAGS[@]}" \
    --model pretrain_videomae_small_patch16_224 \
    --batch_size 16 \
    --sampling_rate 2 \
    --sinkhorn_eps 0.05 \
    --epochs 2401 \
    --save_ckpt_freq 20 \
    "$@"
