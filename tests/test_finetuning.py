"""Fine-tuning and linear probing from a pretraining checkpoint of this codebase, on real encoded videos."""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import pytest
import torch

import engine_for_finetuning as engine
import run_class_finetuning as run
import run_sigma_pretraining
import training_state
from checkpoint import load_checkpoint
from modeling_finetune import create_model
from optim_factory import param_groups
from test_pretraining import epoch_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny classifier on tiny clips: 4 frames of 32 x 32, a 2 x 2 x 2 token grid; 4 synthetic classes.
TINY = ["--data_set", "custom", "--nb_classes", "4", "--model", "vit_tiny_patch16_224", "--input_size", "32",
        "--short_side_size", "32", "--num_frames", "4", "--sampling_rate", "2", "--batch_size", "2",
        "--num_sample", "1", "--warmup_epochs", "1", "--print_freq", "1", "--device", "cpu", "--num_workers", "0",
        "--test_num_segment", "2", "--test_num_crop", "1"]
NO_AUGMENTATION = ["--mixup", "0", "--cutmix", "0", "--aa", "none", "--reprob", "0"]


@pytest.fixture(scope="module")
def pretrained(synthetic_videos, tmp_path_factory):
    """A SIGMA-MLP pretraining checkpoint of the tiny model, made by run_sigma_pretraining.py."""
    out = tmp_path_factory.mktemp("pretrain")
    run_sigma_pretraining.main(run_sigma_pretraining.parse_args([
        "--data_path", str(synthetic_videos), "--data_path_csv", str(synthetic_videos / "train.csv"),
        "--model", "pretrain_videomae_tiny_patch16_224", "--input_size", "32", "--num_frames", "4",
        "--sampling_rate", "2", "--decoder_depth", "1", "--batch_size", "2", "--num_prototypes", "16",
        "--target_type", "mlp", "--epochs", "1", "--steps_per_epoch", "2", "--device", "cpu", "--num_workers", "0",
        "--output_dir", str(out)]))
    return out / "checkpoint-0.pth"


@pytest.fixture(scope="module")
def cached_probe(synthetic_videos, pretrained, tmp_path_factory):
    """The output folder of a linear probe on cached features (training without augmentation)."""
    out = tmp_path_factory.mktemp("probe")
    finetune(synthetic_videos, out, "--finetune", str(pretrained), "--linear_probing", "--epochs", "1",
             "--lr", "0.5", *NO_AUGMENTATION)
    return out


def finetune(videos, output_dir, *flags):
    args = run.parse_args(["--data_path", str(videos), *TINY, "--output_dir", str(output_dir), *flags])
    run.main(args)
    return args


def encoder_weights(pretraining_checkpoint):
    """The classifier-named encoder tensors of a pretraining checkpoint (without its final norm)."""
    state = load_checkpoint(pretraining_checkpoint)["model"]
    return {key[len("encoder."):]: value for key, value in state.items()
            if key.startswith("encoder.") and not key.startswith("encoder.norm.")}


def test_finetune_a_pretrained_encoder_then_resume(synthetic_videos, pretrained, tmp_path, capsys):
    out = tmp_path / "ft"
    args = finetune(synthetic_videos, out, "--finetune", str(pretrained), "--epochs", "1", "--update_freq", "2")
    # 12 videos, 2 per micro-batch, 2 micro-batches per step: 3 steps; lr per 256 videos scaled by 4/256.
    assert args.global_batch_size == 4 and args.num_training_steps_per_epoch == 3
    assert args.lr == pytest.approx(1e-3 * 4 / 256)
    train, test = epoch_log(out)
    assert train["epoch"] == 0 and train["val_videos"] == 8 and 0 <= train["val_acc1"] <= 100
    assert test["test_videos"] == 8

    checkpoint = load_checkpoint(out / "checkpoint-0.pth")
    assert {"model", "optimizer", "epoch", "scaler", "args", "max_accuracy"} <= checkpoint.keys()
    assert checkpoint["epoch"] == 0 and (out / "checkpoint-best.pth").exists()
    predictions = load_checkpoint(out / "test_predictions.pt")
    assert predictions["logits"].shape == (16, 4) and sorted(set(predictions["view"].tolist())) == [0, 1]
    scores = engine.score_predictions(out / "test_predictions.pt")
    assert scores["videos"] == 8 and scores["acc1"] == test["test_acc1"]

    # A longer run with the same --output_dir continues after epoch 0: it trains epoch 1 only.
    finetune(synthetic_videos, out, "--finetune", str(pretrained), "--epochs", "2", "--update_freq", "2")
    assert [record.get("epoch") for record in epoch_log(out)] == [0, None, 1, None]
    assert load_checkpoint(out / "checkpoint-latest.pth")["epoch"] == 1
    # The same command again: the run is finished and tested, so it says so and logs nothing more.
    before = (out / "log.txt").read_text()
    finetune(synthetic_videos, out, "--finetune", str(pretrained), "--epochs", "2", "--update_freq", "2")
    assert (out / "log.txt").read_text() == before
    assert f"top-1 {epoch_log(out)[-1]['test_acc1']:.2f}%" in capsys.readouterr().out


def test_encoder_loads_exactly_and_layer_decay_groups(pretrained):
    model = create_model("vit_tiny_patch16_224", num_classes=4, img_size=32, all_frames=4)
    args = run.parse_args(["--data_path", "x", "--finetune", str(pretrained), "--nb_classes", "4",
                           "--data_set", "custom"])
    args.window_size = tuple(model.patch_embed.grid_size)
    checkpoint = run.load_checkpoint(str(pretrained))
    assert run.load_finetune_checkpoint(model, checkpoint, args) is False  # a pretraining checkpoint has no head
    state = model.state_dict()
    for key, value in encoder_weights(pretrained).items():
        assert torch.equal(state[key], value), key

    groups = param_groups(model, weight_decay=0.05, skip_names=model.no_weight_decay(), layer_decay=0.75)
    names = {id(p): n for n, p in model.named_parameters()}
    scale_of = {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    decay_of = {names[id(p)]: g["weight_decay"] for g in groups for p in g["params"]}
    assert set(scale_of) == set(names.values())  # every parameter exactly once
    assert scale_of["patch_embed.proj.weight"] == pytest.approx(0.75 ** 13)
    for i in range(12):
        assert scale_of[f"blocks.{i}.attn.qkv.weight"] == pytest.approx(0.75 ** (12 - i))
        assert scale_of[f"blocks.{i}.norm1.bias"] == pytest.approx(0.75 ** (12 - i))
    assert scale_of["fc_norm.weight"] == scale_of["head.weight"] == scale_of["head.bias"] == 1.0
    assert decay_of["blocks.3.mlp.fc1.weight"] == decay_of["head.weight"] == 0.05
    assert decay_of["blocks.3.mlp.fc1.bias"] == decay_of["fc_norm.weight"] == decay_of["blocks.0.attn.q_bias"] == 0.0
    assert sorted({g["layer"] for g in groups}) == list(range(14))


def assert_only_the_probe_trained(run_dir, pretrained):
    state = load_checkpoint(run_dir / "checkpoint-latest.pth")["model"]
    for key, value in encoder_weights(pretrained).items():
        assert torch.equal(state[key], value), f"{key} changed during linear probing"
    assert not torch.equal(state["fc_norm.weight"], torch.ones(192))  # the probe itself learned


def test_linear_probe_on_augmented_clips_trains_only_the_head(synthetic_videos, pretrained, tmp_path):
    args = finetune(synthetic_videos, tmp_path, "--finetune", str(pretrained), "--linear_probing", "--epochs", "1",
                    "--lr", "0.5")
    assert args.cache_features is False  # mixup and RandAugment need the clips
    assert_only_the_probe_trained(tmp_path, pretrained)


def test_linear_probe_on_cached_features_trains_only_the_head(cached_probe, pretrained):
    assert_only_the_probe_trained(cached_probe, pretrained)
    args = load_checkpoint(cached_probe / "checkpoint-latest.pth")["args"]
    assert args.cache_features is True  # the default without training augmentation
    # An epoch of the probe is cheaper to run again than to save: the kept epochs only, no best checkpoint.
    assert sorted(p.name for p in cached_probe.glob("checkpoint*")) == ["checkpoint-0.pth", "checkpoint-latest.pth"]
    train, test = epoch_log(cached_probe)
    assert train["train_bad_videos"] == 0 and train["val_videos"] == 8 and test["test_videos"] == 8


def test_probe_on_cached_features_is_the_classifier():
    """The cached path computes what the classifier computes: fc_norm and head on the mean-pooled tokens."""
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, all_frames=4, init_scale=1.0).eval()
    videos = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        expected = model(videos)
        probed = engine.FeatureProbe(model)(engine.pooled_tokens(model, videos))
    torch.testing.assert_close(probed, expected)


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval_mode():
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, all_frames=4, drop_path_rate=0.5)
    trained = engine.freeze_backbone(model)
    assert trained == ["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]
    engine.set_train_mode(model, frozen_backbone=True)
    assert not model.blocks.training and model.head.training and model.fc_norm.training
    model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trained)
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trained)


def toy_epoch(batches, update_freq, model, lr=0.1, **kwargs):
    """One epoch of train_one_epoch for a linear `model` on feature batches; returns its stats."""
    optimizer = torch.optim.SGD([dict(params=list(model.parameters()), lr_scale=1.0, use_weight_decay=False)], lr=lr)
    steps = len(batches) // update_freq
    return engine.train_one_epoch(
        model, model, torch.nn.CrossEntropyLoss(), batches, optimizer, torch.amp.GradScaler("cpu", enabled=False),
        epoch=0, epochs=1, start_step=0, num_steps=steps, update_freq=update_freq, lr_schedule=[lr] * steps,
        wd_schedule=[0.0] * steps, device=torch.device("cpu"), precision="fp32", **kwargs)


def test_accumulated_micro_batches_make_the_step_of_their_union():
    torch.manual_seed(0)
    features, labels = torch.randn(8, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def batch(rows):
        return dict(features=features[rows], label=labels[rows], num_bad=torch.zeros(len(labels[rows])))

    whole, accumulated = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    accumulated.load_state_dict(whole.state_dict())
    toy_epoch([batch(slice(0, 4)), batch(slice(4, 8))], 1, whole)
    toy_epoch([batch(slice(i, i + 2)) for i in range(0, 8, 2)], 2, accumulated)
    for a, b in zip(whole.parameters(), accumulated.parameters()):
        torch.testing.assert_close(a, b)


def test_a_nan_loss_stops_training_with_a_clear_message():
    batches = [dict(features=torch.full((2, 5), float("nan")), label=torch.tensor([0, 1]), num_bad=torch.zeros(2))]
    with pytest.raises(FloatingPointError, match="the loss is nan at epoch 0, step 1/1"):
        toy_epoch(batches, 1, torch.nn.Linear(5, 3))


def test_cutmix_cuts_the_same_box_out_of_every_frame():
    from timm.data import Mixup

    torch.manual_seed(0)
    videos = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1, 1).expand(4, 3, 4, 16, 16).clone()
    mixup = engine.VideoMixup(Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=4))
    mixed, targets = mixup(videos, torch.arange(4))
    assert mixed.shape == (4, 3, 4, 16, 16)
    pasted = mixed[0] == 3  # clip 0 receives its box from clip 3 (the batch flipped)
    assert pasted.any() and not pasted.all()
    assert torch.equal(pasted, pasted[:1, :1].expand_as(pasted))  # one box through every channel and frame
    area = pasted[0, 0].float().mean()
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))
    # Smoothing 0.1 over 4 classes: 0.025 off, 0.925 on; clip 3's label weighs the pasted area.
    assert targets[0, 3].item() == pytest.approx(0.025 + 0.9 * area.item(), abs=1e-6)


def test_eval_refuses_a_pretraining_checkpoint(synthetic_videos, pretrained, tmp_path):
    with pytest.raises(ValueError, match="holds no trained head for 4 classes"):
        finetune(synthetic_videos, tmp_path / "eval", "--finetune", str(pretrained), "--eval")
    with pytest.raises(ValueError, match="--eval needs a trained classifier"):
        finetune(synthetic_videos, tmp_path / "eval", "--eval")


@pytest.mark.parametrize("argv, message", [
    (["--cache_features"], "only a linear probe"),
    (["--linear_probing", "--cache_features"], "add --mixup 0 --cutmix 0 --aa none --reprob 0"),
    (["--batch_size", "3", "--num_sample", "1"], "must be even"),
    (["--layer_decay", "0"], "argument --layer_decay: must be in (0, 1]"),
    (["--enable_deepspeed", "--model_ema"], "argument --model_ema: not with --enable_deepspeed"),
])
def test_bad_flags_fail_naming_the_flag(capsys, argv, message):
    with pytest.raises(SystemExit):
        run.parse_args(["--data_path", "x", *argv])
    assert message in capsys.readouterr().err


PUBLISHED_LINEAR_PROBE = """
    --model vit_base_patch16_224 --data_set SSV2 --nb_classes 174 --data_path annotations/ --finetune ckpt.pth
    --log_dir out/ --output_dir out/ --batch_size 24 --num_sample 2 --input_size 224 --short_side_size 224
    --save_ckpt_freq 100 --num_frames 16 --update_freq 2 --opt adamw --lr 1e-3 --warmup_lr 1e-6
    --opt_betas 0.9 0.999 --weight_decay 0.05 --epochs 30 --dist_eval --test_num_segment 2 --test_num_crop 3
    --linear_probing
"""


def test_published_flags_parse_unchanged():
    args = run.parse_args(PUBLISHED_LINEAR_PROBE.split())
    assert (args.linear_probing, args.dist_eval, args.batch_size, args.num_sample, args.update_freq) == \
           (True, True, 24, 2, 2)
    assert args.cache_features is False  # the published probe augments its clips (mixup, RandAugment)
    assert (args.layer_decay, args.mixup, args.cutmix, args.smoothing, args.aa) == \
           (0.75, 0.8, 1.0, 0.1, "rand-m7-n4-mstd0.5-inc1")
    args = run.parse_args(["--data_path", "x", "--enable_deepspeed", "--examples", "1000", "--use_mean_pooling"])
    assert args.enable_deepspeed and args.examples == 1000 and args.use_mean_pooling and args.zero_stage == 1


@pytest.mark.parametrize("script, expected", [
    ("finetune_ssv2_vit_b.sh", dict(data_set="SSV2", nb_classes=174, batch_size=4, lr=1e-3, epochs=40,
                                    test_num_segment=2, test_num_crop=3, linear_probing=False)),
    ("finetune_k400_vit_b.sh", dict(data_set="Kinetics-400", nb_classes=400, batch_size=4, update_freq=8,
                                    sampling_rate=4, epochs=75, test_num_segment=7, test_num_crop=3)),
    ("linprobe_ssv2_vit_b.sh", dict(data_set="SSV2", batch_size=24, num_sample=2, update_freq=2, epochs=30,
                                    linear_probing=True, cache_features=False)),
])
def test_configuration_scripts_parse_to_their_settings(tmp_path, script, expected):
    environment = {**os.environ, "LAUNCHER": "echo", "DATA_PATH": "/data/lists", "MODEL_PATH": "/w/sigma.pth"}
    result = subprocess.run(["bash", os.path.join(REPO, "scripts", script), "--epochs", "3"], env=environment,
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    command = shlex.split(result.stdout)
    assert command[0] == os.path.join(REPO, "run_class_finetuning.py")
    args = run.parse_args(command[1:])
    settings = {**expected, "epochs": 3}
    assert {key: getattr(args, key) for key in settings} == settings
    assert (args.data_path, args.finetune, args.model, args.dist_eval) == \
           ("/data/lists", "/w/sigma.pth", "vit_base_patch16_224", True)
    assert args.output_dir == "output/" + script[:-3]


def test_severe_script_takes_the_data_set_and_the_few_shot_size(tmp_path):
    environment = {**os.environ, "LAUNCHER": "echo", "DATA_PATH": "/data/gym99", "MODEL_PATH": "/w/sigma.pth",
                   "DATASET": "GYM99", "EXAMPLES": "1000"}
    result = subprocess.run(["bash", os.path.join(REPO, "scripts", "finetune_severe.sh")], env=environment,
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    args = run.parse_args(shlex.split(result.stdout)[1:])
    assert (args.data_set, args.nb_classes, args.examples, args.layer_decay, args.test_num_segment) == \
           ("GYM99", 99, 1000, 0.7, 5)
    assert args.output_dir == "output/finetune_severe_GYM99_1000"
    unknown = subprocess.run(["bash", os.path.join(REPO, "scripts", "finetune_severe.sh")],
                             env={**environment, "DATASET": "Gym"}, capture_output=True, text=True)
    assert unknown.returncode != 0 and "set DATASET to UCF101, HMDB51" in unknown.stderr


def test_few_shot_subset_is_fixed_and_balanced():
    clips = [(f"v{i}.mp4", i % 3) for i in range(30)]
    subset = run.few_shot_subset(clips, 7)
    assert len(subset) == 9 and sorted(label for _, label in subset) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert subset == run.few_shot_subset(clips, 7)  # the same videos in every run
    assert len(run.few_shot_subset(clips, 100)) == 30  # a class smaller than its share gives all it has


# ---- DeepSpeed and several processes ------------------------------------------------------------------

def torchrun(nproc, flags, timeout=300, succeeds=True):
    """`torchrun --standalone --nproc_per_node=N tests/dist_finetuning_worker.py FLAGS` on the CPU; asserts
    that it `succeeds` (exit status 0) or fails."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               os.path.join(REPO, "tests", "dist_finetuning_worker.py"), *flags]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            # torchrun starts its workers in sessions of their own: killing torchrun (what subprocess.run's
            # timeout does) would leave them running. SIGTERM makes torchrun stop them first.
            process.terminate()
            process.communicate()
    assert (process.returncode == 0) == succeeds, output
    return output, time.monotonic() - start


def test_deepspeed_trains_resumes_and_its_checkpoint_evaluates(synthetic_videos, pretrained, tmp_path, capsys):
    out = tmp_path / "ds"
    flags = ["--data_path", str(synthetic_videos), *TINY, "--finetune", str(pretrained), "--output_dir", str(out),
             "--enable_deepspeed", "--zero_stage", "2", "--precision", "bf16", "--update_freq", "2",
             "--print_freq", "3"]
    torchrun(1, [*flags, "--epochs", "1"])
    with open(out / "args.json") as f:
        args = json.load(f)
    assert (args["precision"], args["zero_stage"], args["num_training_steps_per_epoch"]) == ("bf16", 2, 3)
    assert (out / "checkpoint-0" / training_state.DEEPSPEED_MODEL_FILE).exists()

    # Killed between the checkpoint of epoch 1 and its log line: the resume restores the line from the checkpoint.
    torchrun(1, [*flags, "--epochs", "2", "--kill_before_logging_epoch", "1"], succeeds=False)
    assert [record.get("epoch") for record in epoch_log(out)] == [0, None]
    assert (out / "latest").read_text().strip() == "checkpoint-1"
    assert not (out / "checkpoint-0").exists()  # superseded, not a --save_ckpt_freq epoch
    torchrun(1, [*flags, "--epochs", "2"])
    assert [record.get("epoch") for record in epoch_log(out)] == [0, None, 1, None]  # resumed after epoch 1
    assert (out / "latest").read_text().strip() == "checkpoint-1"

    # DeepSpeed's own loader unpickles whatever its files hold; the resume reads them weights-only and refuses.
    from test_safe_loading import Payload  # here: that module takes its flags from this one

    marker = tmp_path / "pwned"
    torch.save({"module": {}, "payload": Payload(marker)}, out / "checkpoint-1" / training_state.DEEPSPEED_MODEL_FILE)
    output, _ = torchrun(1, [*flags, "--epochs", "3"], succeeds=False)
    assert f"refused to load {out / 'checkpoint-1' / training_state.DEEPSPEED_MODEL_FILE}" in output
    assert not marker.exists() and (out / "latest").read_text().strip() == "checkpoint-1"

    # The DeepSpeed checkpoint is tested without DeepSpeed, from its whole (ZeRO 1/2) weights; the message
    # names the file, so a user sees which checkpoint was scored.
    (out / run.PREDICTIONS_FILE).unlink()
    finetune(synthetic_videos, out, "--eval")
    stdout = capsys.readouterr().out
    assert f"evaluating the classifier of {out / 'checkpoint-best' / training_state.DEEPSPEED_MODEL_FILE}" in stdout
    assert engine.score_predictions(out / run.PREDICTIONS_FILE)["videos"] == 8


def test_two_process_dist_eval_scores_every_video_once_like_one_process(synthetic_videos, cached_probe, tmp_path):
    """7 test videos x 3 views on 2 ranks: shares of 11 and 10 views, no padding, the same scores as 1 process."""
    data = tmp_path / "lists"
    data.mkdir()
    for split, count in (("train", None), ("val", None), ("test", 7)):
        lines = (synthetic_videos / f"{split}.csv").read_text().splitlines()[:count]
        (data / f"{split}.csv").write_text("".join(f"{synthetic_videos / line}\n" for line in lines))
    eval_flags = [*TINY, "--test_num_segment", "3", "--resume", str(cached_probe / "checkpoint-latest.pth"),
                  "--eval"]
    finetune(data, tmp_path / "one", *eval_flags)
    torchrun(2, ["--data_path", str(data), *eval_flags, "--output_dir", str(tmp_path / "two"), "--dist_eval"])
    single = load_checkpoint(tmp_path / "one" / run.PREDICTIONS_FILE)
    double = load_checkpoint(tmp_path / "two" / run.PREDICTIONS_FILE)
    assert len(double["view"]) == 21
    for key in ("video_id", "view", "label", "num_bad"):
        assert torch.equal(single[key], double[key]), key
    torch.testing.assert_close(single["logits"], double["logits"], rtol=1e-4, atol=1e-5)
    scores = [engine.score_predictions(path / run.PREDICTIONS_FILE) for path in (tmp_path / "one", tmp_path / "two")]
    assert scores[0]["videos"] == scores[1]["videos"] == 7
    assert (scores[0]["acc1"], scores[0]["acc5"]) == (scores[1]["acc1"], scores[1]["acc5"])


# ---- the demo's probe comparison ------------------------------------------------------------------------

def test_demo_probe_command_is_the_documented_one(tmp_path):
    from scripts import demo_linear_probe

    runs = {"sigma": "tiny", "pixel": "tiny", "supervised": "tiny", "small": "small"}
    for name, size in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "args.json").write_text(
            f'{{"model": "pretrain_videomae_{size}_patch16_224", "input_size": 64, "num_frames": 8, '
            '"sampling_rate": 4, "depth": 4, "patch_size": 8}')
    settings = demo_linear_probe.run_settings(tmp_path / "sigma")
    assert settings == ["--model", "vit_tiny_patch16_224", "--input_size", "64", "--short_side_size", "64",
                        "--num_frames", "8", "--sampling_rate", "4", "--depth", "4", "--patch_size", "8"]
    assert demo_linear_probe.run_settings(tmp_path / "pixel") == settings
    for other in ("--videomae", "--supervised"):
        runs = {"--videomae": str(tmp_path / "pixel"), "--supervised": str(tmp_path / "supervised"),
                other: str(tmp_path / "small")}
        with pytest.raises(SystemExit, match="trained different models"):
            demo_linear_probe.main(["--data", str(tmp_path), "--sigma", str(tmp_path / "sigma"),
                                    *[word for flag in runs.items() for word in flag],
                                    "--output_dir", str(tmp_path / "out")])
    # FINETUNE.md shows the command the script runs, and it parses.
    with open(os.path.join(REPO, "FINETUNE.md")) as f:
        documented = " ".join(f.read().replace("\\\n", " ").split())
    assert " ".join([*settings, *demo_linear_probe.PROBE_FLAGS]) in documented
    args = run.parse_args(["--data_path", "x", "--data_set", "custom", "--nb_classes", "8", *settings,
                           *demo_linear_probe.PROBE_FLAGS])
    assert args.linear_probing and args.cache_features
    assert (args.depth, args.patch_size) == (4, 8)


def test_demo_table_puts_every_encoder_beside_chance(tmp_path):
    from scripts import demo_linear_probe

    results = {"random_init": {"linear_probe": 14.0, "knn": 12.5}, "sigma": {"linear_probe": 15.5, "knn": 13.75},
               "videomae": {"linear_probe": 12.0, "knn": 11.25},
               "supervised": {"linear_probe": 70.0, "knn": 61.0, "end_to_end": 72.5},
               "chance": {"linear_probe": 12.5, "knn": 12.5}}
    rows = demo_linear_probe.format_table(results).splitlines()
    assert [row.split()[-2:] for row in rows[2:7]] == [
        ["14.0%", "12.5%"], ["12.0%", "11.2%"], ["15.5%", "13.8%"], ["70.0%", "61.0%"], ["12.5%", "12.5%"]]
    assert [row.split("  ")[1].strip() for row in rows[2:7]] == [
        "random init", "VideoMAE", "SIGMA", "supervised", "chance"]
    assert "72.5% on test" in rows[7]
    # The supervised run's own score is its log's last test line.
    (tmp_path / "log.txt").write_text('{"epoch": 0, "train_loss": 1.7}\n{"test_acc1": 40.0}\n{"test_acc1": 66.7}\n')
    assert demo_linear_probe.supervised_test_top1(tmp_path) == 66.7


def test_seed_table_shows_mean_spread_and_margins(tmp_path):
    from scripts import summarize_demo_seeds

    for seed, (sigma, random_init) in enumerate(((20.0, 14.0), (16.0, 15.0), (18.0, 13.0))):
        result = {"sigma": {"linear_probe": sigma, "knn": 12.5}, "random_init": {"linear_probe": random_init, "knn": 12.5},
                  "videomae": {"linear_probe": 12.5, "knn": 12.5}, "chance": {"linear_probe": 12.5, "knn": 12.5},
                  "supervised": {"linear_probe": 50.0, "knn": 40.0, "end_to_end": 60.0 + seed}}
        (tmp_path / f"seed_{seed}" / "probes").mkdir(parents=True)
        (tmp_path / f"seed_{seed}" / "probes" / "results.json").write_text(json.dumps(result))
    table = summarize_demo_seeds.format_seed_table(
        summarize_demo_seeds.read_results([tmp_path / f"seed_{seed}" for seed in range(3)]))
    # SIGMA 18 +- 2 (sample std); SIGMA - random init: 6, 1, 5 -> 4.0 +- 2.6
    assert "SIGMA                      18.0 +-  2.0  (20.0, 16.0, 18.0)" in table
    assert "SIGMA - random init         4.0 +-  2.6  (6.0, 1.0, 5.0)" in table
    assert "supervised                 61.0 +-  1.0  (60.0, 61.0, 62.0)" in table
    with pytest.raises(SystemExit, match="did the demo in"):
        summarize_demo_seeds.read_results([tmp_path / "missing"])


class RecordingEngine:
    """Stands in for a DeepSpeed engine: records where load_checkpoint was asked to read."""

    def __init__(self):
        self.checkpoint_engine = argparse.Namespace(load=None)  # restore_deepspeed puts its safe load here

    def load_checkpoint(self, load_dir, tag=None):
        self.loaded = (load_dir, tag)
        return os.path.join(load_dir, tag or "checkpoint-1"), {"epoch": 1}


@pytest.mark.parametrize("resume_in_run", ["", "checkpoint-1"])
def test_deepspeed_resume_takes_the_run_folder_and_the_checkpoint_folder(tmp_path, resume_in_run):
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / training_state.DEEPSPEED_MODEL_FILE).write_bytes(b"weights")
    (tmp_path / training_state.DEEPSPEED_LATEST).write_text("checkpoint-1\n")
    args = argparse.Namespace(output_dir="", auto_resume=True, resume=str(tmp_path / resume_in_run))
    engine = RecordingEngine()
    assert training_state.restore_deepspeed(engine, args) == ({"epoch": 1}, False)
    assert engine.checkpoint_engine.load is training_state.load_deepspeed_file
    # The run folder lets DeepSpeed follow `latest` (tag None); a checkpoint folder is split into folder and tag.
    assert engine.loaded == ((str(tmp_path), None) if not resume_in_run else (str(tmp_path), "checkpoint-1"))
    # --eval without DeepSpeed reads the same weights from either.
    assert training_state.deepspeed_weights(args.resume) == str(
        tmp_path / "checkpoint-1" / training_state.DEEPSPEED_MODEL_FILE)


def test_demo_probe_shows_progress_lines_shortened_and_logs_everything(tmp_path, capsys):
    from scripts import demo_linear_probe

    lines = ["loaded the encoder of x.pth", "Epoch [3/50] [ 4/12]  eta 0:00:08 (run 0:03:10 of training)  loss 1.2",
             "Epoch [4/50] [ 4/12]  eta 0:00:08 (run 0:03:09 of training)  loss 1.1",  # within 5 s: not shown
             "features of 64 videos in 12 s"]
    command = [sys.executable, "-c", f"print({chr(10).join(lines)!r})"]
    demo_linear_probe.run_logged(command, tmp_path / "probe.log", "linear probe")
    assert capsys.readouterr().out.splitlines() == [
        "   linear probe: Epoch [3/50] [ 4/12]  eta 0:00:08 (run 0:03:10 of the probe)",
        "   linear probe: features of 64 videos in 12 s"]
    assert (tmp_path / "probe.log").read_text().splitlines()[1:] == lines


def test_demo_sweep_rule_takes_the_best_validation_knn_of_the_runs_that_did_not_collapse():
    from scripts import demo_sweep

    def record(method, lr, knn, probe, collapse=()):
        return dict(method=method, lr=lr, mask_ratio=0.75, knn=knn, linear_probe=probe, loss_first=1.3, loss=1.0,
                    collapse=list(collapse))

    records = [record("videomae", 1e-3, 25.0, 15.0), record("videomae", 2e-3, 25.0, 18.0),
               record("videomae", 5e-3, 25.0, 18.0),  # a tie on both: the smaller lr
               record("sigma", 1e-3, 40.0, 30.0, ["phi's features all point one way"]),  # best, but collapsed
               record("sigma", 5e-4, 20.0, 20.0), record("sigma_remedies", 5e-4, 22.0, 10.0)]
    chosen, best_sigma = demo_sweep.choose(records)
    assert (chosen["videomae"]["lr"], chosen["sigma"]["lr"]) == (2e-3, 5e-4)
    assert best_sigma is chosen["sigma_remedies"]
    table = demo_sweep.format_table(records, {"knn": 20.0, "linear_probe": 17.0}, 16.7, chosen)
    assert "| SIGMA | 0.001 | 0.75 | 1.300 -> 1.000 | - | - | - | yes | 40.0 | 30.0 |" in table
    assert "| VideoMAE **(chosen)** | 0.002 |" in table
