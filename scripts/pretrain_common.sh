# Shared by scripts/pretrain_*.sh (sourced, not run): the settings every published
# SIGMA pretraining run has in common, and how the processes are started.
#
# Environment (defaults in brackets):
#   DATA_PATH       folder of the videos (SIGMA convention; the paths in DATA_PATH_CSV are relative to it)
#   DATA_PATH_CSV   clip list, `path label` per line (scripts/convert_*.py write them)
#   OUTPUT_DIR      checkpoints and logs; a rerun with the same folder resumes [output/<script name>]
#   TEACHER_WEIGHTS DINO weights for the dino configurations [checkpoints/dino_vitbase16_pretrain.pth]
#   GPUS_PER_NODE   processes on this node [8]
#   LAUNCHER        how to start them [torchrun --standalone --nproc_per_node=$GPUS_PER_NODE];
#                   scripts/slurm_pretrain.sbatch sets it to `srun torchrun ...` for several nodes
# Flags given to a pretrain_*.sh script are appended, so they override these.

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONFIG_NAME=$(basename "$0" .sh)
: "${DATA_PATH:?set DATA_PATH to the folder of the videos}"
: "${DATA_PATH_CSV:?set DATA_PATH_CSV to the clip list (path label per line)}"
OUTPUT_DIR=${OUTPUT_DIR:-output/${CONFIG_NAME#pretrain_}}
TEACHER_WEIGHTS=${TEACHER_WEIGHTS:-checkpoints/dino_vitbase16_pretrain.pth}
LAUNCHER=${LAUNCHER:-torchrun --standalone --nproc_per_node=${GPUS_PER_NODE:-8}}
# One thread per process: the data loader workers already use every core.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

COMMON_FLAGS=(
    --data_path "${DATA_PATH}"
    --data_path_csv "${DATA_PATH_CSV}"
    --output_dir "${OUTPUT_DIR}"
    --run_name "${CONFIG_NAME}"
    --mask_type tube
    --mask_ratio 0.9
    --loss_func SWAV
    --decoder_depth 4
    --num_frames 16
    --opt adamw
    --opt_betas 0.9 0.95
    --warmup_epochs 40
    --normlize_target True
    --sinkhorn_iterations 10
    --augmentation multi_scale_crop
)

# The DINO teacher for the dino configurations: ViT-B/16 of DINO (v1).
DINO_FLAGS=(
    --target_type dino_v1
    --distillation_teacher dino_b
    --teacher_weights "${TEACHER_WEIGHTS}"
)
# SIGMA-MLP: the released MLP checkpoints were trained with 4000 prototypes (their args).
MLP_FLAGS=(
    --target_type mlp
    --num_prototypes 4000
)

pretrain() {
    # shellcheck disable=SC2086  # LAUNCHER is a command line to split into words
    ${LAUNCHER} "${REPO_DIR}/run_sigma_pretraining.py" "${COMMON_FLAGS[@]}" "$@"
}
