# Shared by scripts/slurm_*.sbatch (sourced, not run): the launcher of one torchrun per node, and the
# requeue of a run that stopped on SLURM's signal (preemption.py).
#
# SLURM signals every process of the job step. torchrun's default for SIGUSR1 would end it,
# and with it the workers before they save; scripts/torchrun_preemptible.py runs torchrun
# ignoring the stop signal (the workers take it), and exits with the workers' status 75
# when all of them stopped preempted (plain torchrun reports any worker's end as 1).

PREEMPTED_EXIT_STATUS=75

HEAD_NODE=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)
GPUS_PER_NODE=${SLURM_GPUS_ON_NODE:-$(nvidia-smi --list-gpus | wc -l)}
RDZV_PORT=${RDZV_PORT:-29500}
echo "job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}): ${SLURM_NNODES} nodes x ${GPUS_PER_NODE} GPUs," \
     "rendezvous at ${HEAD_NODE}:${RDZV_PORT}"

export LAUNCHER="srun --kill-on-bad-exit=1 python ${SLURM_SUBMIT_DIR}/scripts/torchrun_preemptible.py \
    --nnodes=${SLURM_NNODES} --nproc_per_node=${GPUS_PER_NODE} \
    --rdzv_id=${SLURM_JOB_ID} --rdzv_backend=c10d --rdzv_endpoint=${HEAD_NODE}:${RDZV_PORT}"

run_requeued_when_preempted() {
    # Runs "$@"; when it exits preempted, requeues this job (the next allocation resumes the run from
    # its checkpoint) and ends this one successfully; any other status is the job's.
    local status=0
    "$@" || status=$?
    if [[ ${status} -eq ${PREEMPTED_EXIT_STATUS} ]]; then
        echo "job ${SLURM_JOB_ID}: the run saved its position and stopped; requeueing to continue it"
        scontrol requeue "${SLURM_JOB_ID}"
        exit 0
    fi
    exit "${status}"
}
