"""bench/gpu_check.py's longer checks: killed-and-resumed torchrun runs, the throughput table, the loader.

Also the torchrun worker of the resume checks (torchrun starts this file):

    torchrun --standalone --nproc_per_node=1 bench/gpu_check_runs.py pretraining|finetuning \\
        [--kill_after_epoch N] FLAGS...

runs run_sigma_pretraining.py or run_class_finetuning.py with FLAGS and, with
--kill_after_epoch N, ends the process with SIGKILL between epoch N's checkpoint and its
log line, as a killed job ends.
"""
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# Fields of log.txt that measure time or memory: they differ between any two runs.
UNEQUAL_FIELDS = ("time", "per_s", "wait", "memory")
# Relative difference accepted between a resumed run's log and an uninterrupted one's: on the CPU they
# are bitwise equal; on a GPU, atomics in attention's backward and cuDNN's autotuned kernels are not
# deterministic, so 20 steps drift by float rounding, not by a lost or repeated step.
RESUME_TOLERANCE = 1e-3
# The goals of bench/README.md on one H100/H200 (bf16, ViT-B 16x224), clips/s.
GOALS = {"ours SIGMA-MLP": 1000, "ours SIGMA-DINO, teacher bf16": 600}


# ---- killed and resumed runs ------------------------------------------------------------------------

def run_sizes(smoke, entry):
    """(synthetic data flags, training flags) of a resume check: 20 steps on a GPU, 4-12 at toy size."""
    classes = 4
    if smoke:
        # 2 steps per epoch, 2 epochs: the fewest that still kill one epoch and resume the next.
        classes = 2
        data = ["--num_classes", "2", "--videos_per_class", "2", "--val_per_class", "1", "--test_per_class", "1",
                "--frames", "24", "--size", "64"]
        clip = ["--input_size", "32", "--num_frames", "4", "--sampling_rate", "2", "--batch_size", "2",
                "--num_workers", "0", "--epochs", "2"]
        model = {"pretraining": ["--model", "pretrain_videomae_tiny_patch16_224", "--num_prototypes", "16",
                                 "--steps_per_epoch", "2"],
                 "finetuning": ["--model", "vit_tiny_patch16_224", "--short_side_size", "32"]}[entry]
    else:
        # 20 training videos in batches of 4: 5 steps per epoch, 4 epochs.
        data = ["--num_classes", str(classes), "--videos_per_class", "5", "--val_per_class", "1",
                "--test_per_class", "1", "--frames", "24", "--size", "112"]
        clip = ["--input_size", "112", "--num_frames", "8", "--sampling_rate", "2", "--batch_size", "4",
                "--num_workers", "2", "--epochs", "4"]
        model = {"pretraining": ["--model", "pretrain_videomae_small_patch16_224", "--num_prototypes", "256",
                                 "--steps_per_epoch", "5"],
                 "finetuning": ["--model", "vit_small_patch16_224", "--short_side_size", "112"]}[entry]
    common = ["--warmup_epochs", "1", "--save_ckpt_freq", "100", "--print_freq", "1", "--seed", "0"]
    if entry == "pretraining":
        return data, clip + model + common + ["--decoder_depth", "1", "--target_type", "mlp"]
    return data, clip + model + common + [
        "--data_set", "custom", "--nb_classes", str(classes), "--num_sample", "1", "--test_num_segment", "2",
        "--test_num_crop", "1", "--mixup", "0", "--cutmix", "0", "--aa", "none", "--reprob", "0",
        "--enable_deepspeed", "--zero_stage", "2", "--precision", "bf16"]


class Torchrun:
    """One `torchrun --nproc_per_node=1` run of this file's worker, started at once; ``wait()`` gives its exit
    status. The uninterrupted run goes on beside the killed and resumed ones: two cores, or one GPU, hold both."""

    def __init__(self, entry, flags, device, log_path, kill_after_epoch=None):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", __file__,
                   entry, *([] if kill_after_epoch is None else ["--kill_after_epoch", str(kill_after_epoch)]),
                   *flags, "--device", device]
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        with open(log_path, "w") as log:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            self.process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self):
        return self.process.wait()

    def stop(self):
        """Ends a run still going (the check's time limit or failure). torchrun starts its worker in a session
        of its own, out of reach of a signal to torchrun's group; SIGTERM to torchrun stops the worker first."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def comparable(path):
    """log.txt's records without the fields that measure time or memory."""
    with open(path) as f:
        records = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if not any(word in k for word in UNEQUAL_FIELDS)} for r in records]


def largest_difference(records, reference):
    """Largest relative difference between the numbers of two lists of records; inf if their shapes differ."""
    if [sorted(r) for r in records] != [sorted(r) for r in reference]:
        return math.inf
    worst = 0.0
    for record, expected in zip(records, reference):
        for key, value in expected.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                worst = max(worst, abs(record[key] - value) / max(abs(value), 1e-12))
            elif record[key] != value:
                return math.inf
    return worst


def check_resume(args, result, entry):
    from scripts import make_synthetic_videos
    data_flags, flags = run_sizes(args.smoke, entry)
    epochs = int(flags[flags.index("--epochs") + 1])
    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(tmp) / "videos"
        make_synthetic_videos.main(["--out", str(videos), *data_flags, "--seed", "0", "--workers", "2"])
        paths = (["--data_path", str(videos), "--data_path_csv", str(videos / "train.csv")]
                 if entry == "pretraining" else ["--data_path", str(videos)])
        runs = {name: Path(tmp) / name for name in ("uninterrupted", "interrupted")}
        killed_at = epochs // 2 - 1
        logs = {name: Path(args.out) / f"resume_{entry}_{name}.log" for name in ("uninterrupted", "killed", "resumed")}

        def start(name, run, **kill):
            return Torchrun(entry, [*paths, *flags, "--output_dir", str(runs[run])], args.device, logs[name], **kill)
        uninterrupted = start("uninterrupted", "uninterrupted")
        started = [uninterrupted]
        try:
            started.append(start("killed", "interrupted", kill_after_epoch=killed_at))
            if started[-1].wait() == 0:
                raise RuntimeError(f"the run to be killed after epoch {killed_at} finished; see {logs['killed']}")
            started.append(start("resumed", "interrupted"))
            for name, run in (("resumed", started[-1]), ("uninterrupted", uninterrupted)):
                status = run.wait()
                if status != 0:
                    raise RuntimeError(f"the {name} run failed (exit status {status}); see {logs[name]}")
        finally:
            for run in started:
                run.stop()
        reference = comparable(runs["uninterrupted"] / "log.txt")
        resumed = comparable(runs["interrupted"] / "log.txt")
    difference = largest_difference(resumed, reference)
    result["data"] = dict(steps=epochs * int(flags[flags.index("--steps_per_epoch") + 1])
                          if "--steps_per_epoch" in flags else None, killed_after_epoch=killed_at,
                          records=len(reference), largest_relative_difference=difference,
                          bitwise_equal=difference == 0.0, reference=reference, resumed=resumed)
    if difference > RESUME_TOLERANCE:
        raise AssertionError(f"the resumed run's log differs from the uninterrupted one's by {difference:.3g} "
                             f"(relative); see {logs['resumed']}")


def worker(argv):
    """torchrun's process: the entry point's main with FLAGS, killed after an epoch if asked."""
    entry, *argv = argv
    kill_epoch = None
    if "--kill_after_epoch" in argv:
        at = argv.index("--kill_after_epoch")
        kill_epoch = int(argv[at + 1])
        del argv[at:at + 2]
    if entry == "finetuning" and "--device" in argv and argv[argv.index("--device") + 1] == "cpu":
        # DeepSpeed's CPU accelerator would first compile its shared-memory all-reduce (minutes);
        # gloo's does the same work for one process.
        import deepspeed.ops
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    import utils
    if kill_epoch is not None:
        log_epoch = utils.log_epoch

        def log_epoch_unless_killed(record, args, env):
            if record.get("epoch") == kill_epoch:
                os.kill(os.getpid(), signal.SIGKILL)
            log_epoch(record, args, env)
        utils.log_epoch = log_epoch_unless_killed
    if entry == "pretraining":
        import run_sigma_pretraining as run
    else:
        import run_class_finetuning as run
    run.main(run.parse_args(argv))


# ---- throughput ---------------------------------------------------------------------------------------

def check_throughput(args, result, compiled):
    """bench_model.py's training steps, one model at a time (so the peak memory is that model's alone)."""
    import torch

    import bench_model
    rows = []
    result["data"] = dict(rows=rows, not_measured=[])
    if args.smoke:
        size = ["--model", "pretrain_videomae_tiny_patch16_224", "--num_frames", "4", "--input_size", "32",
                "--num_prototypes", "16", "--distillation_teacher", "dino_s", "--precision", "fp32",
                "--warmup", "0", "--steps", "1"]
        batches = (2,)
    else:
        size = ["--model", "pretrain_videomae_base_patch16_224", "--num_frames", "16", "--input_size", "224",
                "--precision", "bf16", "--warmup", "3", "--steps", "10"]
        batches = (64, 32)
    names = ([] if compiled else [bench_model.REFERENCE]) + [
        "ours VideoMAE (pixel)", "ours SIGMA-MLP", "ours SIGMA-DINO, teacher bf16"]
    longest = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for batch_size in batches:
            bench_args = bench_model.parse_args([*size, "--batch_size", str(batch_size), "--device", args.device,
                                                 *(["--compile"] if compiled else [])])
            bench_args.threads = torch.get_num_threads()
            bench_args.teacher_weights = bench_model.random_teacher(bench_args, tmp)
            videos, mask = bench_model.batch(bench_args)
            for name in names:
                if time.monotonic() + longest * 1.2 > args.deadline:
                    result["data"]["not_measured"].append(f"{name}, batch {batch_size}: the check's time limit")
                    continue
                row_start = time.monotonic()
                rows.append(measure(name, bench_args, videos, mask, compiled))
                longest = max(longest, time.monotonic() - row_start)
                result["save"]()
    reference = {r["batch_size"]: r["clips_per_s"] for r in rows if r["model"] == bench_model.REFERENCE}
    for row in rows:
        row["vs_transformers"] = row["clips_per_s"] / reference[row["batch_size"]] if row[
            "batch_size"] in reference else None


def measure(name, bench_args, videos, mask, compiled):
    """One row of the table: median step time of `name` after its warm-up steps, peak memory of its steps."""
    import numpy as np
    import torch

    import bench_model
    candidate = bench_model.Candidate(name, bench_args)
    for _ in range(bench_args.warmup + bench_args.steps):
        candidate.step(videos, mask, bench_args.precision)  # resets CUDA's peak before each step
    seconds = float(np.median(candidate.times[bench_args.warmup:]))
    clips_per_s = bench_args.batch_size / seconds
    row = dict(model=name, batch_size=bench_args.batch_size, mode="compiled" if compiled else "eager",
               s_per_step=seconds, clips_per_s=clips_per_s, first_step_s=candidate.times[0],
               peak_memory_gib=candidate.peak_bytes / 2**30 if videos.is_cuda else None,
               mfu=bench_model.utilisation(name, clips_per_s, bench_args), first_loss=candidate.losses[0])
    del candidate
    if videos.is_cuda:
        torch.cuda.empty_cache()
    return row


# ---- the loader -----------------------------------------------------------------------------------------

def check_loader(args, result):
    import bench_dataloader
    result["data"] = bench_dataloader.decoder_table(clips=8 if args.smoke else 32, videos=2 if args.smoke else 4,
                                                   short_side=96 if args.smoke else 320,
                                                   parallel=not args.smoke, cuda=args.device == "cuda")


CHECK_FUNCTIONS = {
    "resume_pretraining": lambda a, r: check_resume(a, r, "pretraining"),
    "resume_finetuning_deepspeed": lambda a, r: check_resume(a, r, "finetuning"),
    "throughput_eager": lambda a, r: check_throughput(a, r, compiled=False),
    "throughput_compiled": lambda a, r: check_throughput(a, r, compiled=True),
    "loader": check_loader,
}


# ---- the report -----------------------------------------------------------------------------------------

def summary(results):
    """The answers: the best clips/s of each model against its goal, and the cores one GPU needs to be fed."""
    rows = [row for name in ("throughput_eager", "throughput_compiled")
            for row in results.get(name, {}).get("data", {}).get("rows", [])]
    best = {}
    for row in rows:
        if row["clips_per_s"] > best.get(row["model"], {}).get("clips_per_s", 0):
            best[row["model"]] = row
    answers = {name: dict(best_clips_per_s=row["clips_per_s"], at=f"batch {row['batch_size']}, {row['mode']}",
                          goal=GOALS.get(name), meets_goal=row["clips_per_s"] >= GOALS[name] if name in GOALS else None)
               for name, row in best.items()}
    loader = results.get("loader", {}).get("data", {})
    per_core = {name: d["clips_per_s"] for name, d in loader.get("decoders", {}).items() if d.get("per_core")}
    feed = max([answers[n]["best_clips_per_s"] for n in GOALS if n in answers] or [max(GOALS.values())])
    cores = {name: math.ceil(feed / rate) for name, rate in per_core.items() if rate}
    return dict(models=answers, loader_clips_per_s_per_core=per_core,
                cores_to_feed_one_gpu=dict(clips_per_s=feed, cores=cores, machine_cores=loader.get("cores")))


def markdown(results, summary_, args):
    lines = [f"# bench/gpu_check.py, device {args.device}{', smoke (toy sizes)' if args.smoke else ''}", ""]
    env = results.get("environment", {}).get("data", {})
    if env:
        lines += ["## Environment", "", " ".join(f"{k}: {v};" for k, v in env.items()), ""]
    lines += ["## Checks", "", "| check | status | seconds | note |", "|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '-')} | {(r.get('error') or '')[:200]} |")
    rows = [row for name in ("throughput_eager", "throughput_compiled")
            for row in results.get(name, {}).get("data", {}).get("rows", [])]
    if rows:
        lines += ["", "## Training steps (forward, backward, AdamW)", "",
                  "| model | batch | mode | s/step | clips/s | peak memory | MFU | vs transformers | first loss |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            memory = "-" if row["peak_memory_gib"] is None else f"{row['peak_memory_gib']:.1f} GiB"
            mfu = "-" if row["mfu"] is None else f"{row['mfu']:.1%}"
            ratio = "-" if row.get("vs_transformers") is None else f"{row['vs_transformers']:.2f}x"
            lines.append(f"| {row['model']} | {row['batch_size']} | {row['mode']} | {row['s_per_step']:.3f} | "
                         f"{row['clips_per_s']:.1f} | {memory} | {mfu} | {ratio} | {row['first_loss']:.4f} |")
    loader = results.get("loader", {}).get("data", {})
    if loader.get("decoders"):
        lines += ["", f"## Loader: one worker per core ({loader.get('cpu')}, {loader.get('cores')} cores)", "",
                  "| decoder | files | clips/s | note |", "|---|---|---|---|"]
        for name, d in loader["decoders"].items():
            rate = "-" if d.get("clips_per_s") is None else f"{d['clips_per_s']:.1f}"
            lines.append(f"| {name.split(', ')[0]} | {d['files']} | {rate} | {d.get('note', '')} |")
    cores = summary_["cores_to_feed_one_gpu"]
    lines += ["", f"Cores one GPU needs at {cores['clips_per_s']:.0f} clips/s (the fastest SIGMA row, else the "
                  "goal):", ""] + [f"- {k}: {v}" for k, v in cores["cores"].items()] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    worker(sys.argv[1:])
