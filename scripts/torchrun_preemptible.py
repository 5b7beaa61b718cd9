"""torchrun for jobs that a signal asks to stop (scripts/slurm_*.sbatch): `python scripts/torchrun_preemptible.py
TORCHRUN_ARGS` runs torchrun with them, with two changes.

- SIGUSR1 is ignored by torchrun itself. SLURM's --signal reaches every process of the
  job step; torchrun does not handle SIGUSR1, so its default would end the launcher and
  the workers before they save. The workers set their own handler (preemption.py).
- When every failed worker exited with status 75 (preempted), this exits with 75 too,
  where torchrun reports any failure as 1; so the job script can tell a run that saved
  and stopped, to be requeued, from one that failed.
"""
import signal
import sys

PREEMPTED_EXIT_STATUS = 75  # preemption.PREEMPTED_EXIT_STATUS (this launcher imports nothing of the project)


def main(argv):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # inherited by the workers, which replace it
    try:
        torchrun(argv)
    except ChildFailedError as error:
        if {failure.exitcode for failure in error.failures.values()} == {PREEMPTED_EXIT_STATUS}:
            sys.exit(PREEMPTED_EXIT_STATUS)
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
