"""run_class_finetuning.py under torchrun, for the tests: `torchrun ... tests/dist_finetuning_worker.py FLAGS`.

`--kill_before_logging_epoch N` (taken off the command line) ends the process with SIGKILL between
epoch N's checkpoint and its log line, as a killed job would end. `--signal_at_step N` sends the process
SIGUSR1 as its N-th optimiser step starts (counted over the run).

One change for the CPU test machines: DeepSpeed's CPU accelerator compiles an optional
shared-memory all-reduce kernel (deepspeed_shm_comm) the first time a process group
starts, about 90 s on 2 cores. Marking it unavailable makes DeepSpeed use gloo's
all-reduce, which is what the tests need; nothing in run_class_finetuning.py changes.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if "--enable_deepspeed" in sys.argv:
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False

import run_class_finetuning  # noqa: E402  (after the DeepSpeed switch)
import utils  # noqa: E402

if "--kill_before_logging_epoch" in sys.argv:
    at = sys.argv.index("--kill_before_logging_epoch")
    kill_epoch = int(sys.argv[at + 1])
    del sys.argv[at:at + 2]
    log_epoch = utils.log_epoch

    def log_epoch_unless_killed(record, args, env):
        if record.get("epoch") == kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)
        log_epoch(record, args, env)

    utils.log_epoch = log_epoch_unless_killed

if "--signal_at_step" in sys.argv:
    import engine_for_finetuning  # noqa: E402

    at = sys.argv.index("--signal_at_step")
    signal_step = int(sys.argv[at + 1])
    del sys.argv[at:at + 2]
    apply_schedules, calls = engine_for_finetuning.apply_schedules, []

    def signalling(*args):
        calls.append(1)
        if len(calls) == signal_step:
            os.kill(os.getpid(), signal.SIGUSR1)
        return apply_schedules(*args)

    engine_for_finetuning.apply_schedules = signalling

if __name__ == "__main__":
    run_class_finetuning.main(run_class_finetuning.parse_args(sys.argv[1:]))
