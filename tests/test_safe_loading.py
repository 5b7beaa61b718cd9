"""A crafted pickle runs no code on any path that reads a checkpoint: every entry point refuses it, naming
the file, writes nothing and fails. The crafted files below make a folder when unpickled with
torch.load(weights_only=False); that folder must never appear."""
import json
import os
import subprocess
import sys

import pytest
import torch

import eval_knn
import extract_features
import run_class_finetuning
import run_sigma_pretraining
import training_state
from checkpoint import UnsafeCheckpointError
from scripts import convert_checkpoint
from test_finetuning import TINY as FINETUNE_TINY
from test_knn import ENCODER
from test_pretraining import REPO, data_flags
from test_pretraining import TINY as PRETRAIN_TINY


class Payload:
    """Unpickled by a full unpickler, it calls os.mkdir(marker): code chosen by whoever wrote the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def craft(path, marker):
    """A file with a training checkpoint's keys, one of whose values is a Payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"payload": Payload(marker)}, "optimizer": {}, "epoch": 0, "module": {}}, path)
    return path


def test_the_payload_runs_under_a_full_unpickler(tmp_path):
    """The crafted file is a real attack: what the entry points must never do, done here once."""
    path = craft(tmp_path / "evil.pth", tmp_path / "pwned")
    torch.load(path, weights_only=False)
    assert (tmp_path / "pwned").is_dir()


def test_pretraining_refuses_a_crafted_resume(synthetic_videos, tmp_path):
    evil, out = craft(tmp_path / "evil.pth", tmp_path / "pwned"), tmp_path / "run"
    args = run_sigma_pretraining.parse_args(data_flags(synthetic_videos) + PRETRAIN_TINY + [
        "--epochs", "1", "--output_dir", str(out), "--resume", str(evil)])
    with pytest.raises(UnsafeCheckpointError, match=f"refused to load {evil}"):
        run_sigma_pretraining.main(args)
    assert not (tmp_path / "pwned").exists()
    assert not any(name.startswith("checkpoint") or name == "log.txt" for name in os.listdir(out))


def test_auto_resume_refuses_a_crafted_checkpoint_in_the_output_dir_and_exits_non_zero(synthetic_videos, tmp_path):
    """A crafted file is no torn file to skip: training over it would hide it. The run stops, naming it."""
    out = tmp_path / "run"
    evil = craft(out / "checkpoint-latest.pth", tmp_path / "pwned")
    command = [sys.executable, os.path.join(REPO, "run_sigma_pretraining.py"), *data_flags(synthetic_videos),
               *PRETRAIN_TINY, "--epochs", "1", "--output_dir", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    # A user error: one line naming the file, exit status 2, no traceback (user_errors.py).
    assert result.returncode == 2
    assert f"error: refused to load {evil}" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "pwned").exists()
    assert sorted(os.listdir(out)) == ["checkpoint-latest.pth"]


@pytest.mark.parametrize("flag", ["--finetune", "--resume"])
def test_finetuning_refuses_a_crafted_checkpoint(synthetic_videos, tmp_path, flag):
    evil, out = craft(tmp_path / "evil.pth", tmp_path / "pwned"), tmp_path / "ft"
    args = run_class_finetuning.parse_args(["--data_path", str(synthetic_videos), *FINETUNE_TINY, "--epochs", "1",
                                            "--output_dir", str(out), flag, str(evil)])
    with pytest.raises(UnsafeCheckpointError, match=f"refused to load {evil}"):
        run_class_finetuning.main(args)
    assert not (tmp_path / "pwned").exists()
    assert not any(name.startswith(("checkpoint", "log", "test_pred")) for name in os.listdir(out))


def test_eval_refuses_a_crafted_classifier(synthetic_videos, tmp_path):
    evil = craft(tmp_path / "evil.pth", tmp_path / "pwned")
    args = run_class_finetuning.parse_args(["--data_path", str(synthetic_videos), *FINETUNE_TINY, "--eval",
                                            "--output_dir", str(tmp_path / "ft"), "--resume", str(evil)])
    with pytest.raises(UnsafeCheckpointError, match=f"refused to load {evil}"):
        run_class_finetuning.main(args)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "ft" / run_class_finetuning.PREDICTIONS_FILE).exists()


def test_knn_and_feature_extraction_refuse_a_crafted_encoder(synthetic_videos, tmp_path):
    evil = craft(tmp_path / "evil.pth", tmp_path / "pwned")
    with pytest.raises(UnsafeCheckpointError, match=f"refused to load {evil}"):
        eval_knn.main(eval_knn.get_args_parser().parse_args(
            ["--data_path", str(synthetic_videos), "--nb_classes", "4", *ENCODER, "--finetune", str(evil)]))
    output = tmp_path / "features.pt"
    with pytest.raises(UnsafeCheckpointError, match=f"refused to load {evil}"):
        extract_features.main(extract_features.get_args_parser().parse_args(
            ["--data_path", str(synthetic_videos / "test.csv"), *ENCODER, "--finetune", str(evil),
             "--output", str(output)]))
    assert not (tmp_path / "pwned").exists() and not output.exists()


@pytest.mark.parametrize("command", ["info", "strip", "export-hf", "import-hf"])
def test_converters_refuse_a_crafted_checkpoint(tmp_path, command):
    if command == "import-hf":  # a transformers folder whose weights file is the crafted one
        source = tmp_path / "hf"
        craft(source / "pytorch_model.bin", tmp_path / "pwned")
        (source / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    else:
        source = craft(tmp_path / "evil.pth", tmp_path / "pwned")
    destination = tmp_path / "out.pth"
    argv = {"info": [str(source)], "import-hf": [str(source), str(destination)]}.get(
        command, [str(source), str(destination)])
    with pytest.raises(UnsafeCheckpointError, match="refused to load"):
        convert_checkpoint.main([command, *argv])
    assert not (tmp_path / "pwned").exists() and not destination.exists()


def test_deepspeed_files_load_weights_only_with_deepspeeds_own_classes(tmp_path):
    """What DeepSpeed pickles (loss scalers, the ZeRO stage, partition maps) loads, in both of torch's formats;
    a crafted file is refused, naming it. DeepSpeed's own loader would run it."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    state = {"loss_scaler": LossScaler(2.0), "zero_stage": ZeroStageEnum.gradients, "weights": torch.ones(3),
             "dynamic": DynamicLossScaler(init_scale=2 ** 16, scale_window=100, min_scale=1, delayed_shift=2,
                                          consecutive_hysteresis=False),
             "param_slice_mappings": [{"head.weight": fragment_address(numel=12, start=4)}]}
    for zipped in (True, False):  # DeepSpeed writes the legacy format unless configured otherwise
        path = tmp_path / f"optim_states_{zipped}.pt"
        torch.save(state, path, _use_new_zipfile_serialization=zipped)
        loaded = training_state.load_deepspeed_file(str(path), map_location=lambda storage, location: storage)
        assert loaded["loss_scaler"].cur_scale == 2.0 and loaded["dynamic"].cur_scale == 2 ** 16
        assert loaded["zero_stage"] is ZeroStageEnum.gradients and torch.equal(loaded["weights"], torch.ones(3))
        assert loaded["param_slice_mappings"][0]["head.weight"] == fragment_address(numel=12, start=4)

    evil = craft(tmp_path / "mp_rank_00_model_states.pt", tmp_path / "pwned")
    with pytest.raises(UnsafeCheckpointError, match=f"refused to load {evil}"):
        training_state.load_deepspeed_file(str(evil))
    assert not (tmp_path / "pwned").exists()
