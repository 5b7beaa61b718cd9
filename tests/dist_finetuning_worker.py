"""run_class_finetuning.py under torchrun, for the tests: `torchrun ... tests/dist_finetuning_worker.py FLAGS`.

One change for the CPU test machines: DeepSpeed's CPU accelerator compiles an optional
shared-memory all-reduce kernel (deepspeed_shm_comm) the first time a process group
starts, about 90 s on 2 cores. Marking it unavailable makes DeepSpeed use gloo's
all-reduce, which is what the tests need; nothing in run_class_finetuning.py changes.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if "--enable_deepspeed" in sys.argv:
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False

import run_class_finetuning  # noqa: E402  (after the DeepSpeed switch)

if __name__ == "__main__":
    run_class_finetuning.main(run_class_finetuning.parse_args(sys.argv[1:]))
