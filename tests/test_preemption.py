"""Runs stopped by a signal mid-epoch continue exactly (1 and 2 processes, fine-tuning with and without
DeepSpeed); a full disk ends a save in one line; the SLURM scripts requeue a preempted job."""
import errno
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

import disk_space
import engine_for_finetuning
import engine_for_pretraining
import preemption
import training_state
import user_errors
from checkpoint import load_checkpoint
from test_finetuning import finetune
from test_finetuning import torchrun as finetuning_torchrun
from test_pretraining import REPO, TIMING_FIELDS, TINY, data_flags, epoch_log, pretrain, torchrun

FINETUNING_TIMINGS = ("train_clips_per_s", "train_time_s")


def without_timings(records):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS + FINETUNING_TIMINGS} for r in records]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def signal_at_step(monkeypatch, engine, at, sig=signal.SIGUSR1):
    """Sends this process `sig` during its `at`-th optimiser step (counted over the run, from 1)."""
    step, calls = engine.optimizer_step, []

    def signalling(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), sig)
        return step(*args, **kwargs)

    monkeypatch.setattr(engine, "optimizer_step", signalling)


@pytest.mark.parametrize("num_workers, at, sig", [("2", 5, signal.SIGUSR1), ("0", 2, signal.SIGTERM)])
def test_pretraining_stopped_mid_epoch_continues_as_if_never_stopped(synthetic_videos, tmp_path, monkeypatch, capsys,
                                                                     num_workers, at, sig):
    """3 steps per epoch: step 5 is step 2 of epoch 1; step 2 is in epoch 0, before any checkpoint."""
    flags = ["--epochs", "2", "--steps_per_epoch", "3", "--num_workers", num_workers, "--mask_type", "random"]
    full = pretrain(synthetic_videos, tmp_path / "full", *flags)
    split = tmp_path / "split"
    signal_at_step(monkeypatch, engine_for_pretraining, at, sig)
    with pytest.raises(SystemExit) as stopped:
        pretrain(synthetic_videos, split, *flags)
    monkeypatch.undo()
    assert stopped.value.code == preemption.PREEMPTED_EXIT_STATUS == 75
    epoch, step = divmod(at, 3)
    assert f"stopped on {sig.name} after step {step}/3 of epoch {epoch}" in capsys.readouterr().out
    saved = load_checkpoint(split / "checkpoint-latest.pth")
    assert (saved["epoch"], saved["position"]["epoch"], saved["position"]["step"]) == (epoch - 1, epoch, step)
    assert saved["position"]["ranks"][0]["index"] == step * 2  # batches of 2 clips
    assert [r["epoch"] for r in (epoch_log(split) if epoch else [])] == list(range(epoch))

    pretrain(synthetic_videos, split, *flags)
    assert f"epoch {epoch} stopped after step {step}, continuing there" in capsys.readouterr().out
    assert without_timings(epoch_log(split)) == without_timings(epoch_log(full))
    assert same_weights(load_checkpoint(split / "checkpoint-1.pth")["model"],
                        load_checkpoint(full / "checkpoint-1.pth")["model"])


def test_finetuning_stopped_mid_epoch_continues_as_if_never_stopped(synthetic_videos, tmp_path, monkeypatch):
    """Mixup, cutmix, RandAugment and random erasing on; 2 micro-batches per step, 3 steps per epoch."""
    flags = ["--epochs", "2", "--update_freq", "2", "--disable_eval_during_finetuning", "--drop_path", "0.1"]
    finetune(synthetic_videos, tmp_path / "full", *flags)
    signal_at_step(monkeypatch, engine_for_finetuning, 4)
    with pytest.raises(SystemExit) as stopped:
        finetune(synthetic_videos, tmp_path / "split", *flags)
    monkeypatch.undo()
    assert stopped.value.code == 75
    assert load_checkpoint(tmp_path / "split" / "checkpoint-latest.pth")["position"]["ranks"][0]["index"] == 4
    finetune(synthetic_videos, tmp_path / "split", *flags)
    assert without_timings(epoch_log(tmp_path / "split")) == without_timings(epoch_log(tmp_path / "full"))
    assert same_weights(load_checkpoint(tmp_path / "split" / "checkpoint-1.pth")["model"],
                        load_checkpoint(tmp_path / "full" / "checkpoint-1.pth")["model"])


# Sends SIGUSR1 to rank 1 only, during its `at`-th step: rank 0 must stop at the same step.
SIGNALLED_RANK_LAUNCHER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import engine_for_pretraining, run_sigma_pretraining as run

step, calls = engine_for_pretraining.optimizer_step, []

def signalling(*args, **kwargs):
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == {at}:
        os.kill(os.getpid(), signal.SIGUSR1)
    return step(*args, **kwargs)

if {at}:
    engine_for_pretraining.optimizer_step = signalling
run.main(run.parse_args())
"""


def test_two_processes_stopped_by_a_signal_to_one_continue_as_if_never_stopped(synthetic_videos, tmp_path):
    flags = data_flags(synthetic_videos) + TINY + ["--epochs", "2", "--steps_per_epoch", "3", "--num_workers", "1"]
    launchers = {}
    for at in (0, 4):
        launchers[at] = tmp_path / f"launch_{at}.py"
        launchers[at].write_text(SIGNALLED_RANK_LAUNCHER.format(repo=REPO, at=at))
    returncode, output, _ = torchrun([str(launchers[0]), *flags, "--output_dir", str(tmp_path / "full")])
    assert returncode == 0, output
    split = ["--output_dir", str(tmp_path / "split")]
    returncode, output, _ = torchrun([str(launchers[4]), *flags, *split])
    assert returncode != 0 and "exitcode  : 75" in output, output  # torchrun reports each worker's status
    assert "stopped on a signal to another process after step 1/3 of epoch 1" in output
    position = load_checkpoint(tmp_path / "split" / "checkpoint-latest.pth")["position"]
    assert (position["world_size"], position["step"], len(position["ranks"])) == (2, 1, 2)
    assert position["ranks"][0]["order"] != position["ranks"][1]["order"]
    returncode, output, _ = torchrun([str(launchers[0]), *flags, *split])
    assert returncode == 0, output
    assert without_timings(epoch_log(tmp_path / "split")) == without_timings(epoch_log(tmp_path / "full"))
    assert same_weights(load_checkpoint(tmp_path / "split" / "checkpoint-1.pth")["model"],
                        load_checkpoint(tmp_path / "full" / "checkpoint-1.pth")["model"])


def test_a_position_of_another_number_of_processes_is_refused_in_one_line():
    position = {"epoch": 3, "step": 2, "world_size": 2, "ranks": [{}, {}]}
    with pytest.raises(preemption.PositionMismatchError, match="with 2 process.*this run has 1"):
        preemption.restore_rank_position(position, 0, 1, None, torch.device("cpu"), "checkpoint-latest.pth")
    assert issubclass(preemption.PositionMismatchError, user_errors.USER_ERRORS)


def test_deepspeed_finetuning_stopped_mid_epoch_continues_as_if_never_stopped(synthetic_videos, tmp_path):
    flags = ["--data_path", str(synthetic_videos), "--data_set", "custom", "--nb_classes", "4",
             "--model", "vit_tiny_patch16_224", "--input_size", "32", "--short_side_size", "32", "--num_frames", "4",
             "--sampling_rate", "2", "--batch_size", "2", "--num_sample", "1", "--warmup_epochs", "1",
             "--print_freq", "1", "--device", "cpu", "--num_workers", "0", "--test_num_segment", "1",
             "--test_num_crop", "1", "--enable_deepspeed", "--precision", "bf16", "--epochs", "2",
             "--disable_eval_during_finetuning", "--mixup", "0", "--cutmix", "0"]
    finetuning_torchrun(1, [*flags, "--output_dir", str(tmp_path / "full")])
    split = tmp_path / "split"
    output, _ = finetuning_torchrun(1, [*flags, "--output_dir", str(split), "--signal_at_step", "8"], succeeds=False)
    assert "exitcode  : 75" in output and "after step 2/6 of epoch 1" in output, output
    assert (split / "latest").read_text().strip() == "checkpoint-1-step2"
    assert not (split / "checkpoint-0").exists()  # superseded once the mid-epoch folder was complete
    finetuning_torchrun(1, [*flags, "--output_dir", str(split)])
    assert sorted(os.listdir(split / "checkpoint-1")) == sorted(os.listdir(tmp_path / "full" / "checkpoint-1"))
    assert not (split / "checkpoint-1-step2").exists()
    assert without_timings(epoch_log(split)) == without_timings(epoch_log(tmp_path / "full"))
    weights = [load_checkpoint(run / "checkpoint-1" / training_state.DEEPSPEED_MODEL_FILE)["module"]
               for run in (split, tmp_path / "full")]
    assert same_weights(*weights)


# ---- a full disk -----------------------------------------------------------------------------------------

def enospc_part_way(monkeypatch, after_bytes):
    """Every torch.save into a file writes `after_bytes` bytes, then fails as a full disk does."""
    save = torch.save

    class FullDisk:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            if self.written + len(data) > after_bytes:
                self.f.write(bytes(data)[:after_bytes - self.written])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: save(obj, FullDisk(f) if hasattr(f, "write") else f,
                                                                    *a, **k))


def test_a_full_disk_mid_save_ends_in_one_line_and_keeps_the_previous_checkpoint(synthetic_videos, tmp_path,
                                                                                monkeypatch, capsys):
    out = pretrain(synthetic_videos, tmp_path / "run", "--epochs", "1", "--save_ckpt_freq", "5")
    before = (out / "checkpoint-latest.pth").read_bytes()
    enospc_part_way(monkeypatch, after_bytes=100_000)
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended, user_errors.reported():
        pretrain(synthetic_videos, out, "--epochs", "3", "--save_ckpt_freq", "5")
    monkeypatch.undo()
    assert ended.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    program = os.path.basename(sys.argv[0])
    assert line.startswith(f"{program}: error: no space left to write {out}/checkpoint-latest.pth: it needs about")
    assert f"{out}/checkpoint-latest.pth is intact" in line and "--auto_resume continues from it" in line
    assert (out / "checkpoint-latest.pth").read_bytes() == before  # epoch 0, as before
    assert sorted(os.listdir(out)) == ["args.json", "checkpoint-0.pth", "checkpoint-latest.pth", "log.txt",
                                       "tensorboard"]  # no temporary left
    assert [r["epoch"] for r in epoch_log(out)] == [0]  # epoch 1 was not saved, so not logged


def test_too_little_room_warns_at_start_and_stops_before_writing(synthetic_videos, tmp_path, monkeypatch, capsys):
    out = pretrain(synthetic_videos, tmp_path / "run", "--epochs", "1")
    size = os.path.getsize(out / "checkpoint-latest.pth")
    monkeypatch.setattr(disk_space, "free_bytes", lambda directory: size + size // 2)  # room for 1.5
    capsys.readouterr()
    pretrain(synthetic_videos, out, "--epochs", "2")
    assert size > 1e8  # 0.11 GB: the tiny model and AdamW's moments
    assert f"has {size * 1.5 / 1e9:.2f} GB free, room for 1 checkpoint(s) of about {size / 1e9:.2f} GB" \
        in capsys.readouterr().out
    monkeypatch.setattr(disk_space, "free_bytes", lambda directory: size // 2)
    with pytest.raises(disk_space.NoSpaceError) as error:
        pretrain(synthetic_videos, out, "--epochs", "3")
    assert f"it needs about {size / 1e9:.2f} GB, {size // 2 / 1e6:.1f} MB free" in str(error.value)
    assert load_checkpoint(out / "checkpoint-latest.pth")["epoch"] == 1


def test_is_no_space_finds_the_errno_under_torchs_runtime_error():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")
    except RuntimeError as error:
        assert disk_space.is_no_space(error)
    assert not disk_space.is_no_space(RuntimeError("another failure"))
    assert not disk_space.is_no_space(OSError(errno.EACCES, "Permission denied"))


# ---- SLURM --------------------------------------------------------------------------------------------------

FAKE_SCONTROL = """#!/bin/bash
echo "$@" >> {calls}
if [[ "$1 $2" == "show hostnames" ]]; then echo node1; fi
"""
# Stands in for a pretrain_*.sh / finetune_*.sh script: records the launcher, ends with the status asked for.
FAKE_CONFIG = """#!/bin/bash
echo "$LAUNCHER" > {launcher}
exit $FAKE_STATUS
"""


@pytest.mark.parametrize("script", ["slurm_pretrain.sbatch", "slurm_finetune.sbatch"])
@pytest.mark.parametrize("status, requeued, job_status", [(75, True, 0), (0, False, 0), (1, False, 1)])
def test_sbatch_requeues_the_job_when_the_run_exits_preempted(tmp_path, script, status, requeued, job_status):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(FAKE_SCONTROL.format(calls=tmp_path / "calls"))
    config = tmp_path / "config.sh"
    config.write_text(FAKE_CONFIG.format(launcher=tmp_path / "launcher"))
    for path in (scontrol, config):
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_SUBMIT_DIR": REPO,
                   "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NNODES": "2",
                   "SLURM_GPUS_ON_NODE": "4", "FAKE_STATUS": str(status)}
    result = subprocess.run(["bash", os.path.join(REPO, "scripts", script), str(config)], env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == job_status, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["show hostnames node[1-2]"] + (["requeue 4242"] if requeued else [])
    assert ("requeueing to continue it" in result.stdout) == requeued
    launcher = (tmp_path / "launcher").read_text().split()
    assert launcher[:4] == ["srun", "--kill-on-bad-exit=1", "python", f"{REPO}/scripts/torchrun_preemptible.py"]
    assert launcher[4:7] == ["--nnodes=2", "--nproc_per_node=4", "--rdzv_id=4242"]
    with open(os.path.join(REPO, "scripts", script)) as f:
        assert "#SBATCH --signal=USR1@300\n" in f.read()


# A worker that waits for SIGUSR1, then exits preempted (75) or, with FAIL set, 3.
WAITING_WORKER = """
import os, signal, sys, time
stopped = []
signal.signal(signal.SIGUSR1, lambda *args: stopped.append(1))
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while not stopped:
    time.sleep(0.05)
sys.exit(3 if os.environ.get("FAIL") else 75)
"""


@pytest.mark.parametrize("fail, status", [(False, 75), (True, 1)])
def test_the_launcher_outlives_sigusr1_and_passes_on_the_preempted_status(tmp_path, fail, status):
    """SLURM signals every process of the step: torchrun must survive SIGUSR1 and report the workers' 75."""
    worker, ready = tmp_path / "worker.py", tmp_path / "ready"
    worker.write_text(WAITING_WORKER)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **({"FAIL": "1"} if fail else {})}
    launcher = subprocess.Popen([sys.executable, os.path.join(REPO, "scripts", "torchrun_preemptible.py"),
                                 "--standalone", "--nproc_per_node=1", str(worker), str(ready)],
                                env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1200):
        if ready.exists() or launcher.poll() is not None:
            break
        time.sleep(0.05)
    assert ready.exists()
    launcher.send_signal(signal.SIGUSR1)
    os.kill(int(ready.read_text()), signal.SIGUSR1)
    assert launcher.wait(timeout=60) == status
