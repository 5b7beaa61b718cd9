"""checkpoint.py: atomic saving, safe loading, hub references, key prefixes; the published checkpoint layout."""
import argparse
import json
import os
import pickle
import random
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoint import (CheckpointError, CheckpointNotFoundError, UnsafeCheckpointError, checkpoint_state_dict,
                        load_checkpoint, resolve_checkpoint, save_checkpoint_atomic, save_safetensors_atomic,
                        select_prefix, strip_prefixes)
from modeling_pretrain import create_pretrain_model, pretrain_model_config

REPO = Path(__file__).resolve().parents[1]
RELEASED_FILE = "pretrain/ssv2/ssv2_vit_b_sigma_with_mlp.pth"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# ------------------------------------------------------------------------------------------
# A checkpoint in the published layout, at tiny scale
# ------------------------------------------------------------------------------------------

TINY = "pretrain_videomae_tiny_patch16_224"


def published_args(**overrides):
    """`args` as the published run_mae_pretraining.py saves them (tiny sizes, SIGMA-MLP)."""
    settings = dict(
        batch_size=32, epochs=801, save_ckpt_freq=50, model=TINY, decoder_depth=1, mask_type="tube",
        target_type="mlp", loss_func="SWAV", augmentation="multi_scale_crop", mask_ratio=0.9, input_size=32,
        drop_path=0.0, normlize_target=True, chromatic_correction=False, gray_scale_prob=0.0, kwindow=1,
        memory_size=0, distillation_teacher="dino_s", num_prototypes=16, sinkhorn_eps=0.05,
        sinkhorn_iterations=10, opt="adamw", opt_eps=1e-8, opt_betas=[0.9, 0.95], clip_grad=None,
        weight_decay=0.05, weight_decay_end=0.05,
        # Forks compute the scaled lr with numpy: a numpy scalar must load too.
        lr=np.float64(1.5e-4 * 32 / 256), warmup_lr=1e-6, min_lr=1e-5, warmup_epochs=40, warmup_steps=-1,
        data_path="/data/ssv2", data_path_csv="/data/ssv2/train.csv", num_frames=4, sampling_rate=2,
        output_dir="/out/sigma", device="cuda", seed=0, resume="", auto_resume=True, start_epoch=0,
        world_size=16, local_rank=-1, dist_on_itp=False, dist_url="env://", distributed=True, rank=0, gpu=0,
        dist_backend="nccl", window_size=(2, 2, 2), patch_size=(16, 16))
    settings.update(overrides)
    return argparse.Namespace(**settings)


# The published PretrainVisionTransformer registers `prototypes` before the MLP `head`;
# this code registers them the other way round. Saving in the published order checks
# that the optimizer state is matched by name, not by position.
def published_order(state):
    tail = [k for k in state if k.startswith("head.")] + ["prototypes"]
    front = [k for k in state if k not in tail]
    return front + ["prototypes"] + [k for k in tail if k != "prototypes"]


def make_published_checkpoint(args=None, epoch=799):
    """(checkpoint dict, source model): weights, AdamW state after one step, scaler, args."""
    args = args or published_args()
    torch.manual_seed(0)
    name, kwargs = pretrain_model_config(args, log=lambda _: None)
    model = create_pretrain_model(name, **kwargs)
    state = model.state_dict()
    order = published_order(state)
    params = dict(model.named_parameters())
    no_decay = lambda k: params[k].ndim <= 1 or k.endswith(".bias") or k in model.no_weight_decay()  # noqa: E731
    groups = [dict(params=[params[k] for k in order if not no_decay(k)], weight_decay=0.05),
              dict(params=[params[k] for k in order if no_decay(k)], weight_decay=0.0)]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    checkpoint = {
        "model": OrderedDict((k, state[k]) for k in order),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                   "_growth_tracker": 17},
        "args": args,
    }
    return checkpoint, model, optimizer


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    checkpoint, model, optimizer = make_published_checkpoint()
    path = tmp_path_factory.mktemp("published") / "checkpoint-799.pth"
    torch.save(checkpoint, path)
    return path, checkpoint, model, optimizer


def assert_same_state(a, b):
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


# ------------------------------------------------------------------------------------------
# Saving and loading local files
# ------------------------------------------------------------------------------------------

def test_published_layout_loads_with_weights_only(published):
    path, saved, _, _ = published
    loaded = load_checkpoint(path)
    assert set(loaded) == {"model", "optimizer", "epoch", "scaler", "args"}
    assert_same_state(loaded["model"], saved["model"])
    assert loaded["epoch"] == 799
    assert loaded["scaler"]["_growth_tracker"] == 17
    assert vars(loaded["args"]) == vars(saved["args"])
    assert loaded["args"].window_size == (2, 2, 2) and isinstance(loaded["args"].lr, np.float64)
    assert len(loaded["optimizer"]["state"]) == len(saved["optimizer"]["state"])


def test_atomic_save_round_trip_and_failure_keeps_old_file(tmp_path):
    path = tmp_path / "checkpoint-1.pth"
    save_checkpoint_atomic({"epoch": 1, "model": {"w": torch.arange(4.0)}}, path)
    assert load_checkpoint(path)["epoch"] == 1
    with pytest.raises(Exception):
        save_checkpoint_atomic({"epoch": 2, "not_picklable": lambda: None}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1.pth"]


def test_safetensors_loads_with_metadata(tmp_path):
    path = tmp_path / "encoder.safetensors"
    args = {"model": "vit_base_patch16_224", "input_size": 224, "window_size": [8, 14, 14]}
    save_safetensors_atomic({"blocks.0.attn.q_bias": torch.ones(3)}, path,
                            metadata={"args": json.dumps(args), "epoch": "800", "content": "encoder"})
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["model"]["blocks.0.attn.q_bias"], torch.ones(3))
    assert loaded["metadata"]["content"] == "encoder"
    assert vars(loaded["args"]) == args and loaded["epoch"] == 800


class RunsCode:
    """Unpickling this calls `function(*arguments)`: what a malicious checkpoint does."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


# torch warns that a raw protocol-4 pickle is unusual before refusing it.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "raw pickle"])
@pytest.mark.parametrize("payload", ["os.system", "os.mkdir"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, writer, payload):
    marker = tmp_path / "pwned"
    exploit = RunsCode(os.system, f"touch {marker}") if payload == "os.system" else RunsCode(os.mkdir, str(marker))
    path = tmp_path / "checkpoint.pth"
    checkpoint = {"model": {"w": torch.zeros(2)}, "args": exploit}
    if writer == "torch.save":
        torch.save(checkpoint, path)
    else:
        path.write_bytes(pickle.dumps(checkpoint))
    with pytest.raises(UnsafeCheckpointError, match=rf"refused to load {path}.*{payload.split('.')[1]}"):
        load_checkpoint(path)
    assert not marker.exists()


def test_objects_outside_the_allow_list_are_named(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"args": argparse.Namespace(output_dir=Path("/out"))}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"pathlib\.\w*Path"):
        load_checkpoint(path)


# Seeded garbage: some of these streams (e.g. seeds 2 and 14) drive torch's weights-only
# unpickler into an IndexError, which must come out as a CheckpointError too.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_pickle_names_the_file(published, tmp_path, damage):
    source = published[0].read_bytes()
    if damage == "truncated":
        blobs = [source[: len(source) * 2 // 3]]
    elif damage == "garbage":
        blobs = [random.Random(seed).randbytes(4096) for seed in range(40)]
    else:
        blobs = [b""]
    path = tmp_path / "checkpoint-799.pth"
    for data in blobs:
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=str(path)) as error:
            load_checkpoint(path)
        assert not isinstance(error.value, UnsafeCheckpointError)


def test_truncated_safetensors_names_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_safetensors_atomic({"w": torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_missing_file_unknown_suffix_and_non_dict(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="hf://"):
        load_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "weights.ckpt").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load_checkpoint(tmp_path / "weights.ckpt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="not a dict"):
        load_checkpoint(tmp_path / "tensor.pth")


def test_weights_are_found_under_their_key_and_prefixes_removed():
    weights = {"module.backbone.blocks.0.w": 1, "backbone.norm.b": 2, "head.w": 3}
    assert checkpoint_state_dict({"model": weights, "epoch": 3}) is weights
    assert checkpoint_state_dict({"module": weights}) is weights  # DeepSpeed
    assert checkpoint_state_dict(weights) is weights  # a bare state dict
    assert checkpoint_state_dict({"teacher": weights, "student": {}}, keys=("teacher", "model")) is weights
    assert strip_prefixes(weights, ("module.", "backbone.")) == {"blocks.0.w": 1, "norm.b": 2, "head.w": 3}
    assert select_prefix({"encoder.a": 1, "decoder.a": 2, "encoder.b.c": 3}, "encoder.") == {"a": 1, "b.c": 3}


# ------------------------------------------------------------------------------------------
# Hugging Face Hub references, offline, from a prepared cache
# ------------------------------------------------------------------------------------------

def write_hub_cache(hf_home, repo_id, filename, source, commit=COMMIT):
    """Lay out a file as huggingface_hub caches it: blobs, a snapshot per commit, refs/main."""
    repo_dir = Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"
    blob = repo_dir / "blobs" / "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(Path(source).read_bytes())
    snapshot_file = repo_dir / "snapshots" / commit / filename
    snapshot_file.parent.mkdir(parents=True)
    snapshot_file.symlink_to(os.path.relpath(blob, snapshot_file.parent))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


def run_offline(hf_home, code):
    """Run `code` in a fresh interpreter with HF_HOME and HF_HUB_OFFLINE=1 set before any import."""
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_hub_reference_resolves_offline_from_cache(published, tmp_path):
    write_hub_cache(tmp_path, "SMSD75/SIGMA", RELEASED_FILE, published[0])
    refs = [f"SMSD75/SIGMA/{RELEASED_FILE}", f"hf://SMSD75/SIGMA/{RELEASED_FILE}",
            f"hf://SMSD75/SIGMA@main/{RELEASED_FILE}", f"SMSD75/SIGMA@{COMMIT}/{RELEASED_FILE}",
            f"https://huggingface.co/SMSD75/SIGMA/blob/main/{RELEASED_FILE}"]
    code = f"""
import json, torch
from checkpoint import load_checkpoint, resolve_checkpoint, CheckpointNotFoundError
out = {{}}
for ref in {refs!r}:
    ckpt = load_checkpoint(ref)
    out[ref] = [resolve_checkpoint(ref), ckpt['epoch'], ckpt['args'].model, float(ckpt['model']['prototypes'].sum())]
out['revision_arg'] = resolve_checkpoint({refs[0]!r}, revision={COMMIT!r})
try:
    resolve_checkpoint({refs[0]!r}, revision='v2.0')
except CheckpointNotFoundError as e:
    out['uncached_revision'] = str(e)
print(json.dumps(out))
"""
    out = run_offline(tmp_path, code)
    expected_path = str(tmp_path / "hub" / "models--SMSD75--SIGMA" / "snapshots" / COMMIT / RELEASED_FILE)
    prototypes_sum = float(published[1]["model"]["prototypes"].sum())
    for ref in refs:
        path, epoch, model, total = out[ref]
        assert path == expected_path, ref
        assert (epoch, model) == (799, TINY)
        assert total == pytest.approx(prototypes_sum, abs=1e-3)
    assert out["revision_arg"] == expected_path
    assert "hf download SMSD75/SIGMA pretrain/ssv2/ssv2_vit_b_sigma_with_mlp.pth --revision v2.0" \
        in out["uncached_revision"]


def test_hub_reference_offline_without_cache_fails_clearly(tmp_path):
    code = f"""
import json
from checkpoint import load_checkpoint
try:
    load_checkpoint('hf://SMSD75/SIGMA/{RELEASED_FILE}')
    print(json.dumps('loaded'))
except FileNotFoundError as e:
    print(json.dumps([type(e).__name__, str(e)]))
"""
    kind, message = run_offline(tmp_path, code)
    assert kind == "CheckpointNotFoundError"
    assert "HF_HUB_OFFLINE is set" in message
    assert f"hf download SMSD75/SIGMA {RELEASED_FILE}" in message
    assert str(tmp_path / "hub") in message


def test_bad_hub_references(published):
    with pytest.raises(ValueError, match="names a repository, not a file"):
        resolve_checkpoint("hf://SMSD75/SIGMA")
    with pytest.raises(ValueError, match="names revision 'v1' but revision='v2'"):
        resolve_checkpoint("hf://SMSD75/SIGMA@v1/x.pth", revision="v2")
    with pytest.raises(ValueError, match="local file"):
        resolve_checkpoint(published[0], revision="main")
