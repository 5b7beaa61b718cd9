"""What a user sees: one-line user errors at every entry point, decord's silenced open errors, and the
encoder geometry taken from the checkpoint."""
import argparse
import os
import subprocess
import sys

import pytest
import torch

import extract_features
from checkpoint import save_checkpoint_atomic
from encoder_geometry import GeometryMismatchError
from modeling_finetune import create_model, load_pretrained_encoder
from user_errors import DEBUG_VARIABLE, USAGE_EXIT_STATUS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(script, *flags, debug=False):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    environment.pop(DEBUG_VARIABLE, None)
    if debug:
        environment[DEBUG_VARIABLE] = "1"
    return subprocess.Popen([sys.executable, os.path.join(REPO, script), *flags], cwd=REPO, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_every_entry_point_reports_a_user_error_in_one_line(tmp_path):
    missing = str(tmp_path / "missing")
    for split in ("train", "val"):  # k-NN reads its lists before the encoder: give it lists to read
        (tmp_path / f"{split}.csv").write_text("video.mp4 0\nvideo.mp4 1\n")
    cases = {  # script and flags -> what the one line must name
        ("run_sigma_pretraining.py", "--data_path", missing + ".csv", "--device", "cpu"): "no such clip list",
        ("run_class_finetuning.py", "--data_path", missing, "--device", "cpu"): missing,
        ("extract_features.py", "--data_path", missing + ".csv", "--output", missing + ".pt"): "no such clip list",
        ("eval_knn.py", "--data_path", str(tmp_path), "--nb_classes", "2", "--finetune",
         "hf://SMSD75/SIGMA/missing.pth"): "HF_HUB_OFFLINE is set",
        ("eval_vos.py", "--davis_root", str(tmp_path), "--results_dir", str(tmp_path)): "is it a DAVIS 2017 folder?",
        ("visualize_prototypes.py", "--finetune", missing + ".pth", "--video", missing + ".mp4",
         "--output_dir", missing): "does not exist",
        ("scripts/convert_checkpoint.py", "info", missing + ".pth"): "does not exist",
        ("scripts/convert_annotations.py", "few_shot", "--list", missing + ".csv", "--examples", "1",
         "--out", missing + ".csv"): missing,
    }
    processes = {case: start(*case) for case in cases}  # in parallel: each spends seconds importing torch
    for case, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        lines = stderr.strip().splitlines()
        assert process.returncode == USAGE_EXIT_STATUS, (case, stderr)
        assert len(lines) == 1 and "Traceback" not in stderr, (case, stderr)
        assert lines[0].startswith(f"{os.path.basename(case[0])}: error: ") and cases[case] in lines[0], (case, stderr)


def test_debug_variable_keeps_the_traceback(tmp_path):
    process = start("scripts/convert_checkpoint.py", "info", str(tmp_path / "missing.pth"), debug=True)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" in stderr and "CheckpointNotFoundError" in stderr


def test_decord_open_errors_do_not_reach_stderr(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(range(256)) * 20)
    code = ("import datasets, sys\n"
            f"try: datasets._open_video({str(bad)!r})\n"
            "except datasets.BadVideoError as error: print(error)\n"
            "print('after', file=sys.stderr)")  # fd 2 works again after the open
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{bad}: cannot open")
    assert result.stderr == "after\n"


@pytest.fixture(scope="module")
def patch8_checkpoint(tmp_path_factory):
    """A tiny classifier's encoder at 32 px, patch 8, 4 frames, tubelet 2, saved with the args of its run."""
    model = create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, all_frames=4, num_classes=0,
                         use_mean_pooling=False)
    path = tmp_path_factory.mktemp("patch8") / "encoder.pth"
    args = argparse.Namespace(model="vit_tiny_patch16_224", input_size=32, num_frames=4)
    save_checkpoint_atomic({"model": model.state_dict(), "args": args}, path)
    return str(path)


def encoder_args(*flags):
    return extract_features.get_args_parser().parse_args(
        ["--data_path", "x.csv", "--output", "x.pt", "--model", "vit_tiny_patch16_224", *flags])


def test_feature_extraction_takes_the_checkpoint_geometry(patch8_checkpoint):
    args = encoder_args("--finetune", patch8_checkpoint)
    encoder = extract_features.build_encoder(args)
    assert (args.input_size, args.num_frames, args.tubelet_size, args.patch_size) == (32, 4, 2, 8)
    assert encoder.patch_embed.grid_size == (2, 4, 4)
    assert encoder.forward_features(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 192)


@pytest.mark.parametrize("flag, value, saved", [("--input_size", "64", "32"), ("--tubelet_size", "1", "2")])
def test_a_flag_that_contradicts_the_checkpoint_is_refused_naming_both(patch8_checkpoint, flag, value, saved):
    args = encoder_args("--finetune", patch8_checkpoint, flag, value)
    with pytest.raises(GeometryMismatchError, match=f"{flag} {value}, but .*encoder.pth was made with {saved}"):
        extract_features.build_encoder(args)


def test_without_a_checkpoint_the_presets_geometry():
    args = encoder_args()
    extract_features.build_encoder(args)
    assert (args.input_size, args.num_frames, args.tubelet_size, args.patch_size) == (224, 16, 2, 16)


def test_a_patch_mismatch_names_the_values_not_missing_flags(patch8_checkpoint):
    model = create_model("vit_tiny_patch16_224", img_size=32, all_frames=4, num_classes=0, depth=1)
    with pytest.raises(Exception, match=r"its patch is 8, this model's 16 \(no flag: the --model presets' 16\)"):
        load_pretrained_encoder(model, torch.load(patch8_checkpoint, weights_only=False))


def test_a_fine_tuned_classifier_gives_the_features_its_head_reads(tmp_path):
    # A 4-block classifier (the demo's supervised ceiling): no final norm, fc_norm of the mean token.
    classifier = create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, all_frames=4, depth=4,
                              num_classes=3).eval()
    path = tmp_path / "classifier.pth"
    save_checkpoint_atomic({"model": classifier.state_dict(),
                            "args": argparse.Namespace(model="vit_tiny_patch16_224", input_size=32, num_frames=4)},
                           path)
    args = encoder_args("--finetune", str(path))
    encoder = extract_features.build_encoder(args)
    assert (args.depth, args.patch_size, args.use_mean_pooling) == (4, 8, True)
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder.forward_features(clip), classifier.forward_features(clip))
    with pytest.raises(GeometryMismatchError, match="--depth 12, but .*classifier.pth was made with 4"):
        extract_features.build_encoder(encoder_args("--finetune", str(path), "--depth", "12"))
