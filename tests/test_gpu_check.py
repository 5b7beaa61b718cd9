"""bench/gpu_check.py at toy size on the CPU (--smoke), so the script a lent GPU runs cannot rot."""
import argparse
import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))

import gpu_check  # noqa: E402


def smoke(out, *checks):
    """`gpu_check.py --device cpu --smoke --only CHECKS`; returns (exit status, its last line as JSON)."""
    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "gpu_check.py"), "--device", "cpu",
                             "--smoke", "--out", str(out), "--only", *checks], cwd=REPO, capture_output=True,
                            text=True, timeout=3600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert json.loads((out / "gpu_check.json").read_text())["checks"].keys() == report["checks"].keys()
    return result.returncode, report


def test_smoke_of_the_checks_in_one_process(tmp_path):
    checks = ["environment", *(f"correctness_{t}" for t in gpu_check.TARGETS), "compile", "fused_adamw",
              "throughput_eager", "throughput_compiled", "loader"]
    status, report = smoke(tmp_path, *checks)
    results = report["checks"]
    assert status == 0 and report["ok"], {k: v.get("error") for k, v in results.items()}
    assert [name for name, r in results.items() if r["status"] == "skipped"] == ["throughput_compiled"]
    assert "needs CUDA" in results["throughput_compiled"]["error"]
    assert results["environment"]["data"]["torch"].startswith("2.")

    for target in gpu_check.TARGETS:
        data = results[f"correctness_{target}"]["data"]
        (row,) = data["comparisons"]  # on the CPU, the device is the CPU: no second comparison
        # bf16 really ran (its loss differs from float32's), and within the tolerance.
        assert 0 < row["loss_rel"] <= gpu_check.TOLERANCES["bf16_loss"]
        calls = data["sinkhorn_calls"]
        if target == "pixel":
            assert calls == []
        else:  # both sides' assignments, under autocast, in float32
            assert len(calls) == 2 and all(c["autocast"] and c["assignments"] == "torch.float32" for c in calls)
    assert results["compile"]["data"]["comparison"]["loss_rel"] <= gpu_check.TOLERANCES["compile_loss"]
    assert results["fused_adamw"]["data"]["relative"] <= gpu_check.TOLERANCES["fused_adamw"]
    assert results["fused_adamw"]["data"]["max_move"] > 1e-4  # three steps moved the weights

    rows = results["throughput_eager"]["data"]["rows"]
    assert [r["model"] for r in rows][0] == "transformers VideoMAEForPreTraining" and len(rows) == 4
    # Same weights, same batch: ours and transformers' VideoMAE start from the same loss.
    assert rows[1]["first_loss"] == pytest.approx(rows[0]["first_loss"], rel=1e-4)
    assert all(r["clips_per_s"] > 0 for r in rows)

    loader = results["loader"]["data"]
    rates = {name: d["clips_per_s"] for name, d in loader["decoders"].items()}
    assert all(rates[f"{decoder}, {files}"] > 0 for decoder in ("pyav (ours)", "decord")
               for files in {d["files"] for d in loader["decoders"].values()})
    # At or below 340p our decoder gives decord's frames bit for bit, on the original and re-encoded files.
    assert all(v == 0 for k, v in loader["same_frames_as_decord"].items() if k.startswith("pyav"))
    assert report["summary"]["cores_to_feed_one_gpu"]["cores"]
    assert "## Training steps" in (tmp_path / "gpu_check.md").read_text()


def test_smoke_of_the_killed_and_resumed_runs(tmp_path):
    status, report = smoke(tmp_path, "resume_pretraining", "resume_finetuning_deepspeed")
    results = report["checks"]
    assert status == 0, {k: v.get("error") for k, v in results.items()}
    for name in ("resume_pretraining", "resume_finetuning_deepspeed"):
        data = results[name]["data"]
        # On the CPU the resumed run is the uninterrupted one, bit for bit, epoch by epoch.
        assert data["bitwise_equal"] and data["records"] >= 2 and data["resumed"] == data["reference"]


def test_a_failing_and_a_hanging_check_are_reported_and_the_rest_still_run(tmp_path, monkeypatch):
    def fails(args, result):
        raise RuntimeError("broken on purpose")

    def hangs(args, result):
        time.sleep(30)

    monkeypatch.setattr(gpu_check, "check_environment", fails)
    monkeypatch.setattr(gpu_check, "check_fused_adamw", hangs)
    monkeypatch.setattr(gpu_check, "check_compile", lambda args, result: result.update(data={"ran": True}))
    args = argparse.Namespace(out=str(tmp_path), check=["environment", "fused_adamw", "compile"],
                              limit_s=[10, 1, 10], smoke=True, device="cpu")
    gpu_check.run_checks(args)
    results = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in args.check}
    assert results["environment"]["status"] == "fail" and "broken on purpose" in results["environment"]["error"]
    assert results["fused_adamw"]["status"] == "timeout" and results["fused_adamw"]["seconds"] < 5
    assert results["compile"] == dict(status="pass", data={"ran": True}, seconds=results["compile"]["seconds"])
