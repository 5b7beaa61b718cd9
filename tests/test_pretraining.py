"""End-to-end pretraining on real encoded videos: every target type, resume, bad checkpoints, NaN, torchrun, flags."""
import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

import engine_for_pretraining
import run_sigma_pretraining as run
from checkpoint import load_checkpoint
from utils import default_loader_workers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny model on tiny clips: 4 frames of 32 x 32 give a 2 x 2 x 2 token grid.
TINY = ["--model", "pretrain_videomae_tiny_patch16_224", "--input_size", "32", "--num_frames", "4",
        "--sampling_rate", "2", "--decoder_depth", "1", "--batch_size", "2", "--num_prototypes", "16",
        "--warmup_epochs", "1", "--steps_per_epoch", "2", "--print_freq", "1", "--device", "cpu",
        "--num_workers", "0"]
STEP_LOSS = re.compile(r"^Epoch \[(\d+)/\d+\] \[\s*(\d+)/\d+\].*?  loss (\S+)", re.MULTILINE)


def data_flags(videos):
    return ["--data_path", str(videos), "--data_path_csv", str(videos / "train.csv")]


def pretrain(videos, output_dir, *flags):
    """Runs run_sigma_pretraining.main in this process on the synthetic videos."""
    args = run.parse_args(data_flags(videos) + TINY + ["--output_dir", str(output_dir), *flags])
    run.main(args)
    return output_dir


def epoch_log(output_dir):
    with open(os.path.join(output_dir, "log.txt")) as f:
        return [json.loads(line) for line in f]


def step_losses(stdout):
    """{(epoch, step): loss} from the log lines (print_freq 1)."""
    return {(int(e), int(s)): float(loss) for e, s, loss in STEP_LOSS.findall(stdout)}


@pytest.fixture(scope="module")
def dino_teacher(tmp_path_factory):
    """A randomly initialised timm ViT-S/16 saved as a local file, standing in for DINO's weights."""
    import timm

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "dino_vits16_random.pth"
    torch.save(timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).state_dict(), path)
    return path


@pytest.mark.parametrize("target_type, loss_func", [("pixel", "L2"), ("mlp", "SWAV"), ("dino_v1", "SWAV")])
def test_pretraining_run_for_each_target(synthetic_videos, tmp_path, dino_teacher, capsys, target_type, loss_func):
    teacher = ["--distillation_teacher", "dino_s", "--teacher_weights", str(dino_teacher)]
    out = pretrain(synthetic_videos, tmp_path / "run", "--target_type", target_type, "--loss_func", loss_func,
                   "--epochs", "1", *(teacher if target_type == "dino_v1" else []))
    stdout = capsys.readouterr().out

    (record,) = epoch_log(out)
    assert record["epoch"] == 0 and 0 < record["train_loss"] < 100
    assert sorted(step_losses(stdout)) == [(0, 1), (0, 2)]

    checkpoint = load_checkpoint(out / "checkpoint-0.pth")
    assert {"model", "optimizer", "epoch", "scaler", "args", "step"} <= checkpoint.keys()
    assert checkpoint["epoch"] == 0 and checkpoint["step"] == 2
    keys = checkpoint["model"].keys()
    assert ("prototypes" in keys) == (loss_func == "SWAV")
    assert ("head.0.weight" in keys) == (target_type == "mlp")
    assert not any("teacher" in key for key in keys)
    # Scaled learning rates are computed once, written back and saved.
    args = checkpoint["args"]
    assert args.global_batch_size == 2 and args.lr == pytest.approx(1.5e-4 * 2 / 256)
    assert args.min_lr == pytest.approx(1e-5 * 2 / 256) and args.window_size == (2, 2, 2)
    with open(out / "args.json") as f:
        saved_args = json.load(f)
    assert saved_args["lr"] == pytest.approx(args.lr) and saved_args["target_type"] == target_type
    # The collapse diagnostics of METHOD.md: the encoder's feature geometry for every target,
    # the assignment statistics of both sides for SWAV.
    assert 1 <= record["train_encoder_rank"] <= 192 and -1 <= record["train_encoder_cosine"] <= 1
    diagnostics = {f"train_{side}_{name}" for side in ("model", "phi") for name in
                   ("usage", "target_usage", "max_q", "accuracy", "majority")} | {"train_phi_cosine", "train_phi_rank"}
    if loss_func == "SWAV":
        assert diagnostics <= record.keys()
        assert all(0 <= record[key] <= 1 for key in diagnostics if not key.endswith(("rank", "cosine")))
        # Never below uniform: the most frequent of K=16 targets has at least 1/16 of them.
        assert 1 / 16 <= record["train_model_majority"] and 1 / 16 <= record["train_phi_max_q"]
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(out / "tensorboard"))
    else:
        assert not diagnostics & record.keys()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision(synthetic_videos, tmp_path, precision):
    out = pretrain(synthetic_videos, tmp_path / "run", "--epochs", "1", "--precision", precision)
    (record,) = epoch_log(out)
    assert 0 < record["train_loss"] < 100
    checkpoint = load_checkpoint(out / "checkpoint-0.pth")
    assert checkpoint["args"].precision == precision
    # Only fp16 needs (and saves) a loss scaler.
    assert ("scale" in checkpoint["scaler"]) == (precision == "fp16")


def test_tensorboard_scalars(synthetic_videos, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = pretrain(synthetic_videos, tmp_path / "run", "--epochs", "1")
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/model_usage", "train/model_accuracy",
            "train/model_majority", "train/phi_cosine", "train/encoder_rank", "data/bad_videos",
            "perf/clips_per_s"} <= tags
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2]


def test_tensorboard_pictures_are_run_videomae_vis_pictures(synthetic_videos, tmp_path):
    """--log_images_every 2 over 3 epochs draws after epochs 2 and 3 (the last); the last picture is the one
    model_pictures draws from the saved weights, for the first video of the list under the seeded mask."""
    import io

    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import model_pictures
    out = pretrain(synthetic_videos, tmp_path / "run", "--epochs", "3", "--log_images_every", "2",
                   "--target_type", "pixel", "--loss_func", "L2")
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("pictures/reconstruction")
    assert [image.step for image in images] == [2, 3]
    logged = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)).convert("RGB"))
    model, checkpoint = model_pictures.load_pretraining_model(str(out / "checkpoint-latest.pth"))
    args = checkpoint["args"]
    video, mask = run.picture_clip(run.build_pretraining_dataset(args), args, torch.device("cpu"))
    picture, _, _ = model_pictures.clip_picture(model, video, mask)
    assert np.array_equal(logged, np.asarray(picture))
    first = synthetic_videos / open(synthetic_videos / "train.csv").readline().split()[0]
    assert torch.equal(video, model_pictures.read_view(first, 4, 2, 32))


@pytest.mark.parametrize("num_workers", ["0", "2"])
def test_stop_and_resume_gives_the_uninterrupted_losses(synthetic_videos, tmp_path, capsys, monkeypatch,
                                                       num_workers):
    flags = ["--epochs", "2", "--num_workers", num_workers, "--mask_type", "random"]
    full = pretrain(synthetic_videos, tmp_path / "full", *flags)
    full_losses = step_losses(capsys.readouterr().out)

    # Stop the second run when its second epoch starts, as a killed job would.
    def stop_at_epoch_1(*args, epoch, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt
        return engine_for_pretraining.train_one_epoch(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(run, "train_one_epoch", stop_at_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        pretrain(synthetic_videos, tmp_path / "split", *flags)
    monkeypatch.undo()
    capsys.readouterr()
    pretrain(synthetic_videos, tmp_path / "split", *flags)
    resumed = capsys.readouterr().out

    resumed_losses = step_losses(resumed)
    assert sorted(resumed_losses) == [(1, 1), (1, 2)]
    assert resumed_losses == {key: full_losses[key] for key in resumed_losses}
    assert [r["train_loss"] for r in epoch_log(tmp_path / "split")] == [r["train_loss"] for r in epoch_log(full)]
    full_model = load_checkpoint(full / "checkpoint-1.pth")["model"]
    split_model = load_checkpoint(tmp_path / "split" / "checkpoint-1.pth")["model"]
    assert all(torch.equal(full_model[k], split_model[k]) for k in full_model)


# Per-epoch fields that measure the machine, not the run.
TIMING_FIELDS = ("train_clips_per_s", "train_data_wait_s", "train_time_s")


def test_two_runs_with_the_same_seed_are_identical(synthetic_videos, tmp_path):
    """Logs (every statistic but the timings) and weights: the whole run is a function of its seed."""
    flags = ["--epochs", "2", "--num_workers", "2", "--target_type", "mlp", "--queue_length", "8",
             "--freeze_prototypes_niters", "1"]
    runs = [pretrain(synthetic_videos, tmp_path / name, *flags) for name in ("a", "b")]
    logs = [[{k: v for k, v in record.items() if k not in TIMING_FIELDS} for record in epoch_log(run)]
            for run in runs]
    assert len(logs[0]) == 2 and logs[0] == logs[1]
    weights = [load_checkpoint(run / "checkpoint-1.pth")["model"] for run in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    other = pretrain(synthetic_videos, tmp_path / "c", *flags, "--seed", "1")
    assert epoch_log(other)[0]["train_loss"] != logs[0][0]["train_loss"]


def initial_weights(output_dir):
    """The weights a run started from: its model rebuilt from its args under its seed."""
    import dist_utils
    from modeling_pretrain import create_pretrain_model, pretrain_model_config

    args = load_checkpoint(output_dir / "checkpoint-latest.pth")["args"]
    name, kwargs = pretrain_model_config(args)
    dist_utils.seed_everything(args.seed)
    return create_pretrain_model(name, **kwargs).state_dict()


@pytest.mark.parametrize("flag, frozen", [("--freeze_prototypes_niters", "prototypes"),
                                          ("--freeze_projection_niters", "head.")])
def test_frozen_parameters_stay_put_for_their_steps(synthetic_videos, tmp_path, flag, frozen):
    # 2 steps per epoch: frozen for the first epoch, trained in the second.
    out = pretrain(synthetic_videos, tmp_path / "run", "--epochs", "1", "--target_type", "mlp", flag, "2")
    start, after = initial_weights(out), load_checkpoint(out / "checkpoint-0.pth")["model"]
    if frozen == "prototypes":  # rescaled to unit rows at every step (rounding aside), never moved
        start["prototypes"] = F.normalize(start["prototypes"], dim=1)
    for key in start:
        assert torch.allclose(start[key], after[key], rtol=0, atol=1e-7) == key.startswith(frozen), key
    out = pretrain(synthetic_videos, out, "--epochs", "2", "--target_type", "mlp", flag, "2")
    trained = load_checkpoint(out / "checkpoint-1.pth")["model"]
    assert not any(torch.equal(after[key], trained[key]) for key in after if key.startswith(frozen))


def test_truncated_checkpoint_is_never_resumed_from(synthetic_videos, tmp_path):
    flags = ["--epochs", "2", "--save_ckpt_freq", "1", "--steps_per_epoch", "1"]
    out = pretrain(synthetic_videos, tmp_path / "run", *flags)
    for name in ("checkpoint-latest.pth", "checkpoint-1.pth"):  # both hold epoch 1
        path = out / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])

    pretrain(synthetic_videos, out, *flags)
    # Resumed from checkpoint-0.pth, the newest complete one: epoch 1 trained again, its earlier line replaced.
    assert [r["epoch"] for r in epoch_log(out)] == [0, 1]
    assert load_checkpoint(out / "checkpoint-latest.pth")["epoch"] == 1  # rewritten whole


def adamw_steps(checkpoint):
    """The step counts of a checkpoint's AdamW moments, one per parameter."""
    return {int(state["step"]) for state in checkpoint["optimizer"]["state"].values()}


def test_resume_from_another_run_takes_its_architecture(synthetic_videos, tmp_path, capsys):
    source = pretrain(synthetic_videos, tmp_path / "source", "--epochs", "1", "--num_prototypes", "12",
                      "--steps_per_epoch", "1")
    capsys.readouterr()
    out = pretrain(synthetic_videos, tmp_path / "continued", "--epochs", "2", "--num_prototypes", "32",
                   "--steps_per_epoch", "1", "--resume", str(source / "checkpoint-0.pth"))
    # The one message a user needs when a flag is overruled, pinned on purpose.
    assert "using the checkpoint's --num_prototypes 12 instead of 32" in capsys.readouterr().out
    assert [r["epoch"] for r in epoch_log(out)] == [1]
    continued = load_checkpoint(out / "checkpoint-1.pth")
    assert continued["model"]["prototypes"].shape == (12, 256) and continued["args"].num_prototypes == 12
    assert adamw_steps(continued) == {2}  # the source's moments (1 step) were loaded and stepped once more


def test_continuing_from_a_checkpoint_whose_optimizer_does_not_fit_starts_fresh_moments(synthetic_videos, tmp_path):
    source = pretrain(synthetic_videos, tmp_path / "source", "--epochs", "1", "--steps_per_epoch", "1")
    checkpoint = load_checkpoint(source / "checkpoint-0.pth")
    groups = checkpoint["optimizer"]["param_groups"]
    checkpoint["optimizer"]["param_groups"] = [dict(groups[0], params=groups[0]["params"] + groups[1]["params"])]
    torch.save(checkpoint, tmp_path / "one_group.pth")
    out = pretrain(synthetic_videos, tmp_path / "continued", "--epochs", "2", "--steps_per_epoch", "1",
                   "--resume", str(tmp_path / "one_group.pth"))
    assert [r["epoch"] for r in epoch_log(out)] == [1]
    continued = load_checkpoint(out / "checkpoint-1.pth")
    assert adamw_steps(continued) == {1}  # fresh moments: one step of this run


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(synthetic_videos, tmp_path):
    out = pretrain(synthetic_videos, tmp_path / "run", "--epochs", "1")
    saved = (out / "checkpoint-latest.pth").read_bytes()
    # An absurd learning rate blows the weights up within a step: the loss turns NaN.
    with pytest.raises(FloatingPointError, match=r"the loss is (nan|inf) at epoch 1, step \d/2 .*last one is intact"):
        pretrain(synthetic_videos, out, "--epochs", "3", "--lr", "1e30", "--warmup_epochs", "0")
    assert (out / "checkpoint-latest.pth").read_bytes() == saved
    assert sorted(os.listdir(out)) == ["args.json", "checkpoint-0.pth", "checkpoint-latest.pth", "log.txt",
                                       "tensorboard"]


def test_bad_videos_are_counted_and_too_many_stop_the_run(synthetic_videos, tmp_path):
    from datasets import BadDataError, BadVideoWarning

    # Next to every good video, an undecodable one.
    lines = (synthetic_videos / "train.csv").read_text().splitlines()
    broken = []
    for i, line in enumerate(lines):
        path = tmp_path / f"broken_{i}.mp4"
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 40)
        broken.append(f"{path} 0")
    clip_list = tmp_path / "half_broken.csv"
    clip_list.write_text("\n".join(f"{synthetic_videos / a} {b}" for a, b in (l.split() for l in lines))
                         + "\n" + "\n".join(broken) + "\n")
    flags = ["--data_path", str(clip_list), "--data_path_csv", "", "--epochs", "1"]  # VideoMAE convention
    with pytest.warns(BadVideoWarning, match="skipping a bad video: .*broken_"):
        out = pretrain(synthetic_videos, tmp_path / "tolerant", *flags, "--max_bad_fraction", "1")
    (record,) = epoch_log(out)
    assert record["train_bad_videos"] > 0 and record["train_loss"] > 0

    with pytest.warns(BadVideoWarning), pytest.raises(
            BadDataError, match=r"videos read in epoch 0 could not be decoded .*--max_bad_fraction 0.05"):
        pretrain(synthetic_videos, tmp_path / "strict", *flags, "--max_bad_fraction", "0.05")
    # The epoch is judged before it is saved: after the fix, the rerun trains it instead of finding it done.
    assert sorted(os.listdir(tmp_path / "strict")) == ["args.json", "tensorboard"]


# ---- several processes ------------------------------------------------------------------------------

def torchrun(script_args, timeout=240):
    """Runs `torchrun --standalone --nproc_per_node=2 SCRIPT ARGS` on the CPU; returns (returncode, output, seconds)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *script_args]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:  # SIGTERM: torchrun stops its workers, which a kill of torchrun leaves running
            process.terminate()
            process.communicate()
    return process.returncode, output, time.monotonic() - start


# Makes rank 1's model misbehave at its second forward pass; `failure` is "nan" or "error".
FAULTY_RANK_LAUNCHER = """
import os, sys
sys.path.insert(0, {repo!r})
import modeling_pretrain, run_sigma_pretraining as run

forward, calls = modeling_pretrain.PretrainVisionTransformer.forward, []

def faulty_forward(self, videos, mask, **kwargs):
    loss, stats = forward(self, videos, mask, **kwargs)
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == {at_call}:
        if {failure!r} == "error":
            raise RuntimeError("injected failure on rank 1")
        loss = loss * float("nan")
    return loss, stats

modeling_pretrain.PretrainVisionTransformer.forward = faulty_forward
run.main(run.parse_args())
"""


def faulty_launcher(tmp_path, failure, at_call):
    path = tmp_path / f"launch_{failure}.py"
    path.write_text(FAULTY_RANK_LAUNCHER.format(repo=REPO, failure=failure, at_call=at_call))
    return str(path)


def test_two_process_run_and_a_nan_on_one_rank_stops_both(synthetic_videos, tmp_path):
    """Epoch 0 trains on two gloo processes; in epoch 1 rank 1's loss turns NaN and both ranks stop."""
    out = tmp_path / "run"
    launcher = faulty_launcher(tmp_path, "nan", at_call=3)
    flags = data_flags(synthetic_videos) + TINY + ["--epochs", "3", "--num_workers", "1", "--output_dir", str(out)]
    returncode, output, _ = torchrun([launcher, *flags])

    assert returncode != 0, output
    with open(out / "args.json") as f:
        assert json.load(f)["global_batch_size"] == 4  # 2 per process x 1 per video x 2 processes
    assert output.count("Epoch [0/3] [2/2]") == 1  # printed by rank 0 only
    for rank in (0, 1):
        assert f"[rank {rank}] pretraining stopped: FloatingPointError: the loss is nan at epoch 1" in output
    (record,) = epoch_log(out)
    assert record["epoch"] == 0
    assert load_checkpoint(out / "checkpoint-latest.pth")["epoch"] == 0


def test_an_error_on_one_rank_stops_the_other_promptly(synthetic_videos, tmp_path):
    launcher = faulty_launcher(tmp_path, "error", at_call=2)
    flags = data_flags(synthetic_videos) + TINY + ["--epochs", "1", "--num_workers", "0",
                                                   "--output_dir", str(tmp_path / "run"),
                                                   "--dist_timeout", "5"]
    returncode, output, seconds = torchrun([launcher, *flags])
    assert returncode != 0
    assert "[rank 1] pretraining stopped: RuntimeError: injected failure on rank 1" in output
    # Rank 0 waits in a collective for rank 1; torchrun ends it instead of the 5-minute timeout.
    assert seconds < 120, output


# ---- flags ------------------------------------------------------------------------------------------

PUBLISHED_SSV2_FLAGS = """
    --data_path videos/ --data_path_csv train.csv --mask_type tube --target_type dino_v1
    --distillation_teacher dino_b --loss_func SWAV --run_name SN_FULL_SSV2_DINOv1_SWAV_3K_4nodes
    --mask_ratio 0.9 --model pretrain_videomae_base_patch16_224 --decoder_depth 4 --batch_size 32
    --num_frames 16 --sampling_rate 2 --opt adamw --opt_betas 0.9 0.95 --warmup_epochs 40
    --save_ckpt_freq 5 --epochs 801 --output_dir out/ --normlize_target True --num_prototypes 3000
    --sinkhorn_eps 0.03 --sinkhorn_iterations 10 --augmentation multi_scale_crop
"""


def test_published_flags_parse_unchanged():
    args = run.parse_args(PUBLISHED_SSV2_FLAGS.split())
    assert (args.target_type, args.distillation_teacher, args.loss_func, args.mask_type) == \
           ("dino_v1", "dino_b", "SWAV", "tube")
    assert (args.batch_size, args.sampling_rate, args.epochs, args.save_ckpt_freq) == (32, 2, 801, 5)
    assert args.opt_betas == [0.9, 0.95] and args.sinkhorn_eps == 0.03 and args.normlize_target is True
    assert args.auto_resume is True and args.clip_grad is None


def test_defaults_are_the_published_ones():
    args = run.parse_args(["--data_path", "x"])
    assert (args.model, args.target_type, args.loss_func, args.mask_type, args.mask_ratio) == \
           ("pretrain_videomae_base_patch16_224", "mlp", "SWAV", "tube", 0.9)
    assert (args.lr, args.min_lr, args.weight_decay, args.opt_betas, args.warmup_epochs) == \
           (1.5e-4, 1e-5, 0.05, [0.9, 0.95], 40)
    assert (args.num_prototypes, args.sinkhorn_eps, args.sinkhorn_iterations, args.decoder_depth) == \
           (3000, 0.05, 10, 4)
    assert (args.epochs, args.save_ckpt_freq, args.num_workers, args.input_size, args.num_frames) == \
           (801, 20, default_loader_workers(), 224, 16)  # 10 where there are the cores
    assert args.precision is None and args.wandb is False and args.normlize_target is True
    assert run.parse_args(["--data_path", "x", "--no_auto_resume", "--no-normlize_target"]).auto_resume is False


@pytest.mark.parametrize("script, expected", [
    ("pretrain_k400_vit_b_dino.sh", dict(model="pretrain_videomae_base_patch16_224", target_type="dino_v1",
                                         batch_size=40, sampling_rate=4, sinkhorn_eps=0.05, epochs=801)),
    ("pretrain_k400_vit_b_mlp.sh", dict(model="pretrain_videomae_base_patch16_224", target_type="mlp",
                                        batch_size=40, sampling_rate=4, num_prototypes=4000)),
    ("pretrain_ssv2_vit_b_dino.sh", dict(model="pretrain_videomae_base_patch16_224", target_type="dino_v1",
                                         batch_size=32, sampling_rate=2, sinkhorn_eps=0.03, save_ckpt_freq=5)),
    ("pretrain_ssv2_vit_b_mlp.sh", dict(target_type="mlp", sampling_rate=2, sinkhorn_eps=0.03)),
    ("pretrain_ssv2_vit_s_dino.sh", dict(model="pretrain_videomae_small_patch16_224", target_type="dino_v1",
                                         distillation_teacher="dino_b", batch_size=16, epochs=2401)),
    ("pretrain_ssv2_vit_s_mlp.sh", dict(model="pretrain_videomae_small_patch16_224", target_type="mlp",
                                        epochs=2401, save_ckpt_freq=20)),
])
def test_published_configuration_scripts_parse_to_their_settings(tmp_path, script, expected):
    environment = {**os.environ, "LAUNCHER": "echo", "DATA_PATH": "/data/videos",
                   "DATA_PATH_CSV": "/data/train.csv", "TEACHER_WEIGHTS": "/w/dino.pth"}
    result = subprocess.run(["bash", os.path.join(REPO, "scripts", script), "--epochs", "3"],
                            env=environment, capture_output=True, text=True, check=True, cwd=tmp_path)
    command = shlex.split(result.stdout)
    assert command[0] == os.path.join(REPO, "run_sigma_pretraining.py")
    args = run.parse_args(command[1:])
    assert args.epochs == 3  # flags given to the script override its own
    settings = dict(expected, epochs=3) if "epochs" in expected else expected
    assert {key: getattr(args, key) for key in settings} == settings
    assert (args.mask_ratio, args.loss_func, args.augmentation, args.num_frames) == (0.9, "SWAV",
                                                                                     "multi_scale_crop", 16)
    assert args.data_path == "/data/videos" and args.output_dir == "output/" + script[len("pretrain_"):-3]
    if args.target_type == "dino_v1":
        assert args.teacher_weights == "/w/dino.pth"


@pytest.mark.parametrize("argv, message", [
    (["--target_type", "pixels"], "argument --target_type: invalid choice: 'pixels'"),
    (["--batch_size", "two"], "argument --batch_size: invalid int value: 'two'"),
    (["--batch_size", "0"], "argument --batch_size: must be positive, got 0"),
    (["--mask_ratio", "1.0"], "argument --mask_ratio: must be in [0, 1), got 1.0"),
    (["--opt", "sgd"], "argument --opt: invalid choice: 'sgd'"),
    (["--opt_betas", "0.9"], "argument --opt_betas: expected 2 arguments"),
    (["--normlize_target", "yes please"], "argument --normlize_target: expected true or false"),
    (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
    (["--sinkhorn_eps", "0"], "argument --sinkhorn_eps: must be positive"),
    (["--max_bad_fraction", "2"], "argument --max_bad_fraction: must be in [0, 1]"),
    (["--no_such_flag", "1"], "unrecognized arguments: --no_such_flag 1"),
])
def test_bad_flags_fail_naming_the_flag(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run.parse_args(["--data_path", "x", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_command_line_without_data_path_fails_clearly():
    result = subprocess.run([sys.executable, "run_sigma_pretraining.py", "--epochs", "1"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "the following arguments are required: --data_path" in result.stderr


def test_missing_teacher_weights_name_the_flag(synthetic_videos, tmp_path):
    with pytest.raises(FileNotFoundError, match="--teacher_weights"):
        pretrain(synthetic_videos, tmp_path / "run", "--target_type", "dino_v1", "--epochs", "1")


def test_summary_of_a_run(synthetic_videos, tmp_path):
    out = pretrain(synthetic_videos, tmp_path / "run", "--epochs", "2")
    text = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "summarize_pretraining.py"), str(out)],
                          capture_output=True, text=True, check=True).stdout
    records = epoch_log(out)
    first, last = records[0], records[-1]
    assert re.search(rf"loss +{first['train_loss']:.3f} -> {last['train_loss']:.3f} ", text)
    assert "2 ln K = 5.55" in text  # K = 16
    # Each diagnostic from its first to its last epoch, the accuracy beside its majority baseline.
    assert re.search(rf"predicts phi's cluster +{first['train_model_accuracy']:.1%} -> "
                     rf"{last['train_model_accuracy']:.1%}", text)
    assert re.search(rf"always the most frequent one +{first['train_model_majority']:.1%} -> "
                     rf"{last['train_model_majority']:.1%}", text)
    assert re.search(rf"feature cosine +{first['train_phi_cosine']:.3f} -> {last['train_phi_cosine']:.3f}", text)
    assert "collapse" in text
    assert str(out / "checkpoint-latest.pth") in text and "tensorboard --logdir" in text


def test_summary_names_the_signs_of_collapse():
    from scripts import summarize_pretraining as summary

    healthy = {"train_phi_cosine": 0.4, "train_model_max_q": 0.2, "train_model_usage": 0.8,
               "train_model_accuracy": 0.30, "train_model_majority": 0.05}
    assert summary.collapse_signs(healthy, num_prototypes=64) == []
    collapsed = {"train_phi_cosine": 0.99, "train_model_max_q": 0.018, "train_model_usage": 0.0,
                 "train_model_accuracy": 0.109, "train_model_majority": 0.11}
    signs = summary.collapse_signs(collapsed, num_prototypes=64)
    assert len(signs) == 3
    assert "0.990" in signs[0] and "uniform 0.0156" in signs[1] and "usage 0.00" in signs[2]
    # Guessing the most frequent target is not learning, collapsed or not.
    verdict = summary.learning_verdict(collapsed)
    assert verdict.startswith("NOT LEARNING") and "10.9%" in verdict and "11.0%" in verdict
    assert not summary.learning_verdict(healthy).startswith("NOT")
    assert summary.learning_verdict({"train_loss": 1.0}) is None
