"""Fault injection: pretraining and fine-tuning killed (SIGKILL) at random points of saving and logging,
stopped by SIGUSR1 at random steps, and given a full disk at random points of a checkpoint's write, then
resumed; what the faults cost.

    python bench/fault_injection.py                  # 20 kills per entry point, about 20 min on 2 cores
    python bench/fault_injection.py --trials 3 --seed 1

Each entry point first runs uninterrupted on tiny synthetic videos (3 epochs, the tiny
models, on the CPU), counting the events below; that run is the reference. Each trial
then runs the same command in a fresh folder and SIGKILLs it at one event drawn at
random:

- write:  inside a checkpoint's write, after a random number of its bytes;
- rename: after a finished temporary, before it is renamed over the checkpoint;
- log:    after an epoch's checkpoint, before its log.txt line;
- line:   in the middle of a log.txt line;
- signal: SIGUSR1 during a random training step (the run saves its position mid-epoch and
          exits with status 75, preempted; at the run's last step it just finishes);
- enospc: a write of a checkpoint fails with ENOSPC after a random number of its bytes
          (the run must end with one line on stderr, exit status 2, no temporary left).

Then the same command runs again (auto-resume) to the end. Counted per entry point:
lost_records and repeated_records (log.txt against one line per epoch and one test
line), torn_files (checkpoints that do not load, after the kill or after the resume),
stale_temporaries (left after the resume), differing_records (lines that differ from
the reference run's, timings aside), resumed (resumed runs that finished), preempted
(signal trials that exited with status 75) and one_line_errors (enospc trials that ended
with status 2 and a single stderr line, no traceback).
"""
import argparse
import errno
import json
import os
import random
import signal
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = ("write", "rename", "log", "line", "signal", "enospc")
TIMING_FIELDS = ("train_clips_per_s", "train_data_wait_s", "train_time_s")
COMMON = ["--input_size", "32", "--num_frames", "4", "--sampling_rate", "2", "--batch_size", "2", "--device", "cpu",
          "--num_workers", "0", "--epochs", "3", "--save_ckpt_freq", "2", "--warmup_epochs", "1"]


def commands(videos, output_dir):
    """{entry point: command line} of the runs the trials kill."""
    return {
        "pretraining": [os.path.join(REPO, "run_sigma_pretraining.py"), "--data_path", str(videos),
                        "--data_path_csv", os.path.join(videos, "train.csv"), *COMMON,
                        "--model", "pretrain_videomae_tiny_patch16_224", "--decoder_depth", "1",
                        "--num_prototypes", "16", "--steps_per_epoch", "2", "--output_dir", str(output_dir)],
        "fine-tuning": [os.path.join(REPO, "run_class_finetuning.py"), "--data_path", str(videos), *COMMON,
                        "--data_set", "custom", "--nb_classes", "4", "--model", "vit_tiny_patch16_224",
                        "--short_side_size", "32", "--num_sample", "1", "--test_num_segment", "2",
                        "--test_num_crop", "1", "--mixup", "0", "--cutmix", "0", "--aa", "none", "--reprob", "0",
                        "--output_dir", str(output_dir)],
    }


# ---------------------------------------------------------------------------------
# In the child: count the events, and kill at the chosen one
# ---------------------------------------------------------------------------------

def install_faults(kind, at, after_bytes, counts_file):
    """Kills this process at the `at`-th event `kind` (after `after_bytes` bytes for a write); with kind
    None writes to counts_file at exit how many events of each kind there were, and the bytes of each
    write."""
    import atexit

    import checkpoint
    import utils

    counts = dict.fromkeys(EVENTS, 0)

    def event(name):
        counts[name] += 1
        return name == kind and counts[name] == at

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class Metered:
        """A file that counts the bytes written to it, and past `limit` (if not None) kills the process or,
        with `full`, fails as a full disk does."""

        def __init__(self, f, limit, full=False):
            self.f, self.limit, self.written, self.full = f, limit, 0, full

        def write(self, data):
            if self.limit is not None and self.written + len(data) > self.limit:
                self.f.write(bytes(data)[:max(self.limit - self.written, 0)])
                self.f.flush()
                if self.full:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                die()
            self.written += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    atomic_write, write_sizes, save_sizes = checkpoint._atomic_write, [], []

    def faulty_atomic_write(path, write, link_from=None):
        if write is None:  # a hard link: nothing is written
            return atomic_write(path, write, link_from)
        killed = event("write")
        # A full disk at the `at`-th write of a checkpoint (not of log.txt or the test predictions).
        full = os.path.basename(path).startswith("checkpoint-") and event("enospc")
        metered = Metered(None, after_bytes if killed or full else None, full=full)

        def metered_write(f):
            metered.f = f
            write(metered)

        atomic_write(path, metered_write, link_from)
        write_sizes.append(metered.written)
        if os.path.basename(path).startswith("checkpoint-"):
            save_sizes.append(metered.written)

    replace = os.replace

    def faulty_replace(source, destination):
        if str(source).endswith(".tmp") and event("rename"):
            die()
        return replace(source, destination)

    log_epoch, append_json_line = utils.log_epoch, utils.append_json_line

    def faulty_log_epoch(record, args, env):
        if "epoch" in record and event("log"):
            die()
        return log_epoch(record, args, env)

    def faulty_append(obj, path):
        if event("line"):
            with open(path, "a") as f:
                line = json.dumps(obj) + "\n"
                f.write(line[:len(line) // 2])
            die()
        return append_json_line(obj, path)

    import engine_for_finetuning
    import engine_for_pretraining

    def signalling(optimizer_step):
        def step(*args, **kwargs):
            if event("signal"):
                os.kill(os.getpid(), signal.SIGUSR1)
            return optimizer_step(*args, **kwargs)
        return step

    for engine in (engine_for_pretraining, engine_for_finetuning):
        engine.optimizer_step = signalling(engine.optimizer_step)
    checkpoint._atomic_write, os.replace = faulty_atomic_write, faulty_replace
    utils.log_epoch, utils.append_json_line = faulty_log_epoch, faulty_append
    if counts_file:
        sizes = {"counts": counts, "write_sizes": write_sizes, "save_sizes": save_sizes}
        atexit.register(lambda: json.dump(sizes, open(counts_file, "w")))


def child(argv):
    """`fault_injection.py --child KIND AT BYTES COUNTS_FILE SCRIPT ARGS...`: SCRIPT's main, with faults."""
    kind, at, after_bytes, counts_file, script, *args = argv
    sys.path.insert(0, REPO)
    sys.argv = [script, *args]
    install_faults(None if kind == "none" else kind, int(at), int(after_bytes), counts_file or None)
    import runpy

    runpy.run_path(script, run_name="__main__")


# ---------------------------------------------------------------------------------
# In the parent: trials and what they cost
# ---------------------------------------------------------------------------------

def launch(command, kind="none", at=0, after_bytes=0, counts_file=""):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, os.path.abspath(__file__), "--child", kind, str(at), str(after_bytes),
                           counts_file, *command], cwd=REPO, env=environment, capture_output=True, text=True)


def read_log(output_dir):
    path = os.path.join(output_dir, "log.txt")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def torn_checkpoints(output_dir):
    """Checkpoint files of `output_dir` that do not load."""
    from checkpoint import CheckpointError, load_checkpoint

    torn = []
    for name in sorted(os.listdir(output_dir)):
        if name.startswith("checkpoint-") and name.endswith(".pth"):
            try:
                load_checkpoint(os.path.join(output_dir, name))
            except CheckpointError:
                torn.append(name)
    return torn


def temporaries(output_dir):
    return [name for name in os.listdir(output_dir) if name.startswith(".") and name.endswith(".tmp")]


def comparable(record):
    return json.dumps({k: v for k, v in record.items() if k not in TIMING_FIELDS}, sort_keys=True)


def run(videos, work_dir, trials=20, seed=0, entry_points=("pretraining", "fine-tuning"), log=lambda *args: None):
    """Runs `trials` kills per entry point in `work_dir`; returns {entry point: counts} (see the docstring)."""
    rng = random.Random(seed)
    report = {}
    for name in entry_points:
        reference_dir = os.path.join(work_dir, f"{name}_reference")
        counts_file = os.path.join(work_dir, f"{name}_events.json")
        result = launch(commands(videos, reference_dir)[name], counts_file=counts_file)
        if result.returncode != 0:
            raise RuntimeError(f"the reference {name} run failed:\n{result.stderr[-3000:]}")
        with open(counts_file) as f:
            counted = json.load(f)
        events = {kind: count for kind, count in counted["counts"].items() if count}
        reference = [comparable(r) for r in read_log(reference_dir)]
        totals = dict(trials=0, killed=0, preempted=0, one_line_errors=0, resumed=0, lost_records=0,
                      repeated_records=0, torn_files=0, temporaries_after_kill=0, stale_temporaries=0,
                      differing_records=0, **{f"{kind}_trials": 0 for kind in EVENTS})
        for trial in range(trials):
            kind = rng.choice(sorted(events))
            at = rng.randint(1, events[kind])
            sizes = {"write": counted["write_sizes"], "enospc": counted["save_sizes"]}.get(kind)
            after_bytes = rng.randint(0, sizes[at - 1] - 1) if sizes else 0
            output_dir = os.path.join(work_dir, f"{name}_{trial}")
            command = commands(videos, output_dir)[name]
            faulty = launch(command, kind, at, after_bytes)
            killed = faulty.returncode == -signal.SIGKILL
            stderr_lines = faulty.stderr.strip().splitlines()
            torn_after_kill = torn_checkpoints(output_dir)
            totals["temporaries_after_kill"] += len(temporaries(output_dir))
            resumed = launch(command)
            records = [comparable(r) for r in read_log(output_dir)]
            lost = sum(max(reference.count(r) - records.count(r), 0) for r in set(reference))
            repeated = len(records) - (len(reference) - lost)
            trial_counts = dict(trials=1, killed=int(killed), preempted=int(faulty.returncode == 75),
                                one_line_errors=int(faulty.returncode == 2 and len(stderr_lines) == 1
                                                    and "error: no space left to write" in stderr_lines[0]),
                                resumed=int(resumed.returncode == 0), **{f"{kind}_trials": 1},
                                lost_records=lost, repeated_records=max(repeated, 0),
                                torn_files=len(torn_after_kill) + len(torn_checkpoints(output_dir)),
                                stale_temporaries=len(temporaries(output_dir)),
                                differing_records=len(set(records) - set(reference)))
            for key, value in trial_counts.items():
                totals[key] += value
            log(f"{name} trial {trial}: {kind} #{at}" + (f" after {after_bytes} bytes" if sizes else "")
                + f": {trial_counts}")
            if resumed.returncode != 0:
                log(resumed.stderr[-2000:])
        report[name] = totals
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="kills per entry point")
    parser.add_argument("--seed", type=int, default=0, help="seeds the choice of the kills")
    parser.add_argument("--videos", help="synthetic video folder (default: made in the work folder)")
    parser.add_argument("--work_dir", help="where the runs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="fault_injection_")
    sys.path.insert(0, REPO)  # the project's modules, for checking the files and making the videos
    videos = args.videos
    if videos is None:
        from scripts import make_synthetic_videos

        videos = make_synthetic_videos.main([
            "--out", os.path.join(work_dir, "videos"), "--num_classes", "4", "--videos_per_class", "3",
            "--val_per_class", "2", "--test_per_class", "2", "--frames", "24", "--size", "64", "--seed", "0",
            "--workers", "1"])
    report = run(str(videos), work_dir, args.trials, args.seed, log=lambda *a: print(*a, flush=True))
    print(json.dumps(report, indent=2))
    failures = {name: {k: v for k, v in counts.items()
                       if k in ("lost_records", "repeated_records", "torn_files", "stale_temporaries",
                                "differing_records") and v}
                for name, counts in report.items()}
    unclear = any(c["one_line_errors"] != c["enospc_trials"] for c in report.values())  # a traceback, say
    sys.exit(1 if any(failures.values()) or unclear or any(c["resumed"] != c["trials"] for c in report.values())
             else 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        main()
