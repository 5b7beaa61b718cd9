# Shared by scripts/finetune_*.sh and scripts/linprobe_*.sh (sourced, not run): the settings every
# published SIGMA fine-tuning and linear-probing run has in common, and how the processes are started.
#
# Environment (defaults in brackets):
#   DATA_PATH      directory of train.csv, val.csv, test.csv (`path label` per line, scripts/convert_*.py)
#   MODEL_PATH     checkpoint to start from: a pretraining checkpoint of run_sigma_pretraining.py or a
#                  released one, e.g. hf://SMSD75/SIGMA/pretrain/ssv2/ssv2_vit_b_sigma_with_dino.pth
#   OUTPUT_DIR     checkpoints, logs, test predictions; a rerun with the same folder resumes
#                  [output/<script name>]
#   GPUS_PER_NODE  processes on this node [8]
#   LAUNCHER       how to start them [torchrun --standalone --nproc_per_node=$GPUS_PER_NODE]; for several
#                  nodes e.g. `srun torchrun --nnodes=$SLURM_NNODES ... --rdzv_backend=c10d --rdzv_endpoint=...`
# Flags given to a script are appended, so they override these (e.g. --eval to test a finished run).

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONFIG_NAME=$(basename "$0" .sh)
: "${DATA_PATH:?set DATA_PATH to the directory of train.csv, val.csv and test.csv}"
: "${MODEL_PATH:?set MODEL_PATH to the pretrained checkpoint (a path or hf://OWNER/REPO/FILE)}"
OUTPUT_DIR=${OUTPUT_DIR:-output/${CONFIG_NAME}}
LAUNCHER=${LAUNCHER:-torchrun --standalone --nproc_per_node=${GPUS_PER_NODE:-8}}
# One thread per process: the data loader workers already use every core.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

COMMON_FLAGS=(
    --model vit_base_patch16_224
    --data_path "${DATA_PATH}"
    --finetune "${MODEL_PATH}"
    --output_dir "${OUTPUT_DIR}"
    --run_name "${CONFIG_NAME}"
    --input_size 224
    --short_side_size 224
    --num_frames 16
    --opt adamw
    --opt_betas 0.9 0.999
    --weight_decay 0.05
    --dist_eval
)

finetune() {
    # shellcheck disable=SC2086  # LAUNCHER is a command line to split into words
    ${LAUNCHER} "${REPO_DIR}/run_class_finetuning.py" "${COMMON_FLAGS[@]}" "$@"
}
