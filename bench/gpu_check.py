"""Everything a lent GPU should answer, in one call: environment, correctness, resumed runs, throughput.

    bash bench/gpu_check.sh                                   # one H100/H200: under 8 minutes
    python bench/gpu_check.py --device cpu --smoke --out /tmp/gpu_check   # every check at toy size on the CPU

Each check runs in its own process under its own time limit (and inside what is left
of --budget_s), so a check that fails, crashes or hangs is reported and the others
still run. The checks, in order (gpu_check_runs.py holds the last four):

- environment: torch, CUDA, cuDNN, the GPU, its memory and driver, TF32 and SDPA settings;
- correctness_{pixel,mlp,dino_v1,dino_v2}: the first step's loss and gradient norms (whole
  model and per part) under bf16 autocast against float32 on the same device, and
  float32 on the device against float32 on the CPU (TF32 off), within TOLERANCES; for the
  SWAV targets, every Sinkhorn call under autocast is recorded and must return float32
  (checked, not assumed) with marginals 1/K and 1/N; dino targets use a random-init teacher;
- compile: Module.compile (what --compile does) against eager, float32, first step;
- fused_adamw: the fused AdamW kernel against the for-each one, 3 steps on the same gradients;
- resume_pretraining: a 20-step `torchrun --nproc_per_node=1` pretraining run (NCCL on a
  GPU) killed by SIGKILL after a checkpoint and resumed, against an uninterrupted run;
- resume_finetuning_deepspeed: the same for fine-tuning with --enable_deepspeed, ZeRO-2;
- throughput_eager, throughput_compiled: bench_model.py's training steps at ViT-B 16x224,
  tube 0.9, bf16, batch 32 and 64: clips/s, peak memory (reset per measured model), MFU,
  and transformers' VideoMAEForPreTraining on the same work for the ratio;
- loader: clips/s per core of each decoder on the same files (bench_dataloader.py), the
  machine's cores, and how many cores keep one GPU fed at the measured model speed.

With --smoke every check runs at toy size; checks that need CUDA are reported as
skipped, by name. The run writes OUT/gpu_check.md (the tables) and OUT/gpu_check.json
and prints that JSON as its last line. Exit status 1 when a check failed.
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# Relative differences accepted. bf16 keeps 8 mantissa bits (0.4% per rounding) and the
# SWAV loss takes an argmax of Sinkhorn assignments that bf16 features can flip for
# near-tied tokens; float32 on two devices differs only in summation order.
TOLERANCES = {"bf16_loss": 0.05, "bf16_grad_norm": 0.10, "cpu_loss": 1e-3, "cpu_grad_norm": 1e-2,
              "compile_loss": 1e-4, "compile_grad_norm": 1e-3, "fused_adamw": 1e-6}
TARGETS = ("pixel", "mlp", "dino_v1", "dino_v2")
# name -> (time limit in seconds on a GPU, why it is skipped on the CPU or None). Expected on one H100:
# about 6 minutes in all; the limits add up to more, and --budget_s caps the whole run.
CHECKS = {"environment": (60, None), **{f"correctness_{t}": (90, None) for t in TARGETS},
          "compile": (150, None), "fused_adamw": (60, None), "resume_pretraining": (150, None),
          "resume_finetuning_deepspeed": (180, None), "throughput_eager": (120, None),
          "throughput_compiled": (200, "needs CUDA: on the CPU only compile time, which the compile check covers"),
          "loader": (90, None)}
SMOKE_LIMIT_S = 600  # every check at toy size on the CPU: only a hang should reach it, also on loaded machines


def sizes(smoke):
    """Model sizes of the correctness checks: the smallest that still runs every code path."""
    if smoke:
        return dict(model="pretrain_videomae_tiny_patch16_224", num_frames=4, input_size=32, batch_size=2,
                    num_prototypes=16, teacher="dino_s")
    return dict(model="pretrain_videomae_small_patch16_224", num_frames=16, input_size=112, batch_size=4,
                num_prototypes=3000, teacher="dino_s")


# ---- the environment ------------------------------------------------------------------------------

def check_environment(args, result):
    import torch

    from utils import library_versions
    data = dict(library_versions(), platform=platform.platform(), cores=len(os.sched_getaffinity(0)),
                cpu=cpu_model())
    data["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        data.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported(),
                    driver=nvidia_smi("driver_version"))
    import utils
    # torch's defaults here; training runs turn TF32 and cuDNN autotuning on (utils.start_run prints them).
    data["gpu_math_defaults"] = utils.gpu_math_settings()
    result["data"] = data
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch sees no GPU (driver older than the wheel's CUDA?)")


def cpu_model():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")


def nvidia_smi(field):
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


# ---- correctness ------------------------------------------------------------------------------------

def build_model(target, size, teacher_weights, teacher_precision="fp32"):
    """A pretraining model of `target` at `size`, seeded, so every call gives the same weights (on the CPU)."""
    import torch

    from modeling_pretrain import create_pretrain_model, pretrain_model_config
    settings = argparse.Namespace(model=size["model"], num_frames=size["num_frames"], input_size=size["input_size"],
                                  target_type=target, loss_func="L2" if target == "pixel" else "SWAV",
                                  num_prototypes=size["num_prototypes"], distillation_teacher=size["teacher"])
    name, kwargs = pretrain_model_config(settings, log=lambda *a: None)
    if target.startswith("dino"):
        kwargs.update(teacher_weights=teacher_weights, teacher_precision=teacher_precision)
    torch.manual_seed(0)
    return create_pretrain_model(name, **kwargs)


def random_teacher(target, teacher, directory):
    """A random-init DINO teacher file (the cost and the code path are those of the real weights)."""
    import timm
    import torch

    from dino_teacher import DINO_TEACHERS
    path = os.path.join(directory, f"{target}_{teacher}.pth")
    torch.manual_seed(0)
    torch.save(timm.create_model(DINO_TEACHERS[(target, teacher)].timm_name, pretrained=False,
                                 num_classes=0).state_dict(), path)
    return path


def example_batch(size, device):
    """Random normalised videos on `device` and a tube mask on the CPU, as the loader gives it."""
    import numpy as np
    import torch

    from masking_generator import build_masking_generator
    grid = (size["num_frames"] // 2, size["input_size"] // 16, size["input_size"] // 16)
    masks = build_masking_generator("tube", grid, 0.9, rng=np.random.default_rng(0))
    videos = torch.randn(size["batch_size"], 3, size["num_frames"], size["input_size"], size["input_size"],
                         generator=torch.Generator().manual_seed(0))
    return videos.to(device), torch.from_numpy(np.stack([masks() for _ in range(size["batch_size"])]))


def first_step(model, videos, mask, precision):
    """(loss, {part: gradient norm}) of one forward and backward pass; parts: the model's top-level modules."""
    import torch

    from utils import autocast
    model.zero_grad(set_to_none=True)
    with autocast(precision, videos.device):
        loss, _ = model(videos, mask)
    loss.backward()
    parts = {}
    for name, param in model.named_parameters():
        if param.grad is not None:
            parts.setdefault(name.split(".")[0], []).append(param.grad.detach().float().norm())
    norms = {part: torch.stack(values).norm().item() for part, values in parts.items()}
    norms["total"] = sum(v ** 2 for v in norms.values()) ** 0.5
    return loss.item(), norms


class SinkhornRecorder:
    """Wraps modeling_pretrain's sinkhorn_knopp: records, per call, the autocast state and the dtypes in and
    out, and whether the assignments' marginals are those Sinkhorn promises."""

    def __init__(self):
        import modeling_pretrain
        self.module, self.original, self.calls = modeling_pretrain, modeling_pretrain.sinkhorn_knopp, []

    def __enter__(self):
        import torch

        def recorded(scores, eps, iterations):
            q = self.original(scores, eps, iterations)
            # Rows are distributions; the column sums (mass per prototype) balance to N / K.
            balance = (q.sum(0) * q.shape[1] / q.shape[0] - 1).abs().max().item()
            self.calls.append(dict(autocast=torch.is_autocast_enabled(scores.device.type), scores=str(scores.dtype),
                                   assignments=str(q.dtype), row_sum_error=(q.sum(1) - 1).abs().max().item(),
                                   prototype_balance_error=balance))
            return q
        self.module.sinkhorn_knopp = recorded
        return self

    def __exit__(self, *exc):
        self.module.sinkhorn_knopp = self.original


def check_correctness(args, result, target):
    import tempfile

    import torch

    import utils
    size, device = sizes(args.smoke), torch.device(args.device)
    precision = "bf16"
    with tempfile.TemporaryDirectory() as tmp:
        teacher = random_teacher(target, size["teacher"], tmp) if target.startswith("dino") else None
        # The teacher in the precision training gives it under bf16 (run_sigma_pretraining: bf16).
        model = build_model(target, size, teacher, teacher_precision="bf16").to(device)
        reference = build_model(target, size, teacher, teacher_precision="fp32").to(device)
        videos, mask = example_batch(size, device)
        utils.set_tf32(False)  # the float32 reference is float32, not TF32
        fp32_loss, fp32_norms = first_step(reference, videos, mask, "fp32")
        utils.set_tf32(True)  # as training runs: TF32 for the float32 matmuls left under autocast
        with SinkhornRecorder() as recorder:
            bf16_loss, bf16_norms = first_step(model, videos, mask, precision)
        utils.set_tf32(False)
        rows = [comparison("bf16 autocast vs fp32, same device", bf16_loss, fp32_loss, bf16_norms, fp32_norms,
                           TOLERANCES["bf16_loss"], TOLERANCES["bf16_grad_norm"])]
        if device.type == "cuda":
            on_cpu = build_model(target, size, teacher, teacher_precision="fp32")
            cpu_loss, cpu_norms = first_step(on_cpu, videos.cpu(), mask, "fp32")
            rows.append(comparison("fp32 device vs fp32 CPU", fp32_loss, cpu_loss, fp32_norms, cpu_norms,
                                   TOLERANCES["cpu_loss"], TOLERANCES["cpu_grad_norm"]))
        else:
            result["skipped"] = ["fp32 device vs fp32 CPU (the device is the CPU)"]
    result["data"] = dict(size=size, precision=precision, comparisons=rows, sinkhorn_calls=recorder.calls)
    failures = [row["name"] for row in rows if not row["ok"]]
    if target != "pixel":
        # The scores reach Sinkhorn in float32 (prototype_scores) and its arithmetic must stay there.
        bad = [call for call in recorder.calls if call["assignments"] != "torch.float32" or not call["autocast"]
               or call["row_sum_error"] > 1e-4 or call["prototype_balance_error"] > 1e-2]
        if not recorder.calls or bad:
            failures.append(f"Sinkhorn under autocast: {len(recorder.calls)} calls, {bad or 'none recorded'}")
    if failures:
        raise AssertionError("; ".join(failures))


def comparison(name, loss, reference_loss, norms, reference_norms, loss_tol, norm_tol):
    """One row: the relative differences of the loss and of each gradient norm, and whether they are within."""
    def rel(a, b):
        return abs(a - b) / max(abs(b), 1e-12)
    norm_errors = {part: rel(norms[part], reference_norms[part]) for part in reference_norms}
    ok = rel(loss, reference_loss) <= loss_tol and max(norm_errors.values()) <= norm_tol
    return dict(name=name, ok=ok, loss=loss, reference_loss=reference_loss, loss_rel=rel(loss, reference_loss),
                grad_norm_rel=norm_errors, loss_tol=loss_tol, grad_norm_tol=norm_tol)


def check_compile(args, result):
    import torch

    import utils
    size, device = sizes(args.smoke), torch.device(args.device)
    utils.set_tf32(False)
    videos, mask = example_batch(size, device)
    eager = build_model("mlp", size, None).to(device)
    compiled = build_model("mlp", size, None).to(device)
    # What --compile does: in place, the parameter names unchanged. At toy size on the CPU, dynamo's graph
    # capture and AOT autograd without inductor's C++ code generation, which takes minutes on 2 cores.
    compiled.compile(**({"backend": "aot_eager"} if args.smoke else {}))
    start = time.perf_counter()
    compiled_loss, compiled_norms = first_step(compiled, videos, mask, "fp32")
    seconds = time.perf_counter() - start
    eager_loss, eager_norms = first_step(eager, videos, mask, "fp32")
    row = comparison("compiled vs eager, fp32, SIGMA-MLP", compiled_loss, eager_loss, compiled_norms, eager_norms,
                     TOLERANCES["compile_loss"], TOLERANCES["compile_grad_norm"])
    result["data"] = dict(comparison=row, first_compiled_step_s=round(seconds, 1),
                          backend="aot_eager" if args.smoke else "inductor")
    if not row["ok"]:
        raise AssertionError(f"compiled and eager differ: {row}")


def check_fused_adamw(args, result):
    import torch
    device = torch.device(args.device)
    model = build_model("mlp", sizes(args.smoke), None).to(device)
    params = {kind: [p.detach().clone().requires_grad_(True) for p in model.parameters()]
              for kind in ("fused", "foreach")}
    optimizers = {kind: torch.optim.AdamW(params[kind], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05,
                                          **{kind: True}) for kind in params}
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for i, grad in enumerate(torch.randn(p.shape, generator=generator) for p in params["fused"]):
            for kind in params:
                params[kind][i].grad = grad.to(device)
        for optimizer in optimizers.values():
            optimizer.step()
    # The largest difference relative to the largest weight: a few float32 roundings (1.2e-7 each) at
    # most, where a wrong step (lr, decay, bias correction) would move weights by about lr = 1e-3.
    largest = max(p.detach().abs().max().item() for p in params["foreach"])
    moved = max((p.detach() - q.detach()).abs().max().item() for p, q in zip(params["foreach"], model.parameters()))
    difference = max((p - q).abs().max().item() for p, q in zip(params["fused"], params["foreach"]))
    result["data"] = dict(max_difference=difference, max_move=moved, largest_weight=largest,
                          relative=difference / largest)
    if difference / largest > TOLERANCES["fused_adamw"]:
        raise AssertionError(f"fused AdamW differs from for-each by {difference:.3g} (moves {moved:.3g})")


# ---- running the checks -----------------------------------------------------------------------------

class CheckTimeout(Exception):
    """A check's own time limit, raised by SIGALRM inside the check."""


def run_checks(args):
    """In a child process: runs the checks named by --check in order, each under its own limit (SIGALRM),
    and writes OUT/NAME.json ({status, data, error, skipped}) as each ends, so a crash loses only one."""
    import gpu_check_runs
    functions = {"environment": check_environment, "compile": check_compile, "fused_adamw": check_fused_adamw,
                 **{f"correctness_{t}": (lambda a, r, t=t: check_correctness(a, r, t)) for t in TARGETS},
                 **gpu_check_runs.CHECK_FUNCTIONS}

    def alarm(signum, frame):
        raise CheckTimeout(signum)
    signal.signal(signal.SIGALRM, alarm)
    # The parent's SIGTERM (a hang past every limit) also unwinds the check, so that what it started
    # (torchrun and its worker) is stopped on the way out.
    signal.signal(signal.SIGTERM, alarm)
    for name, limit in zip(args.check, args.limit_s):
        path = Path(args.out) / f"{name}.json"
        result = {"status": "running"}
        # Checks that measure row by row save as they go: a time limit keeps the rows measured.
        result["save"] = lambda: path.write_text(json.dumps({k: v for k, v in result.items() if k != "save"},
                                                            default=str))
        start = time.monotonic()
        args.deadline = start + limit
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            functions[name](args, result)
            result["status"] = "pass"
        except CheckTimeout as stop:
            result.update(status="timeout", error=f"stopped at its time limit of {limit:.0f} s" if stop.args[0] ==
                          signal.SIGALRM else "stopped by SIGTERM (the whole run's limit)")
        except Exception as error:  # a failed check is reported, and the others still run
            import traceback
            result.update(status="fail", error=f"{type(error).__name__}: {error}",
                          traceback=traceback.format_exc()[-3000:])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        result["seconds"] = round(time.monotonic() - start, 1)
        result["save"]()
        print(f"[{name}: {result['status']}]", flush=True)
        if "SIGTERM" in result.get("error", ""):
            break  # the run is being stopped: the checks after this one do not start


def launch(names, limits, args, out):
    """Runs checks `names` in one child process (its own process group) under the sum of their `limits`
    and a grace period; returns {name: result} of those it finished, read from their files."""
    command = [sys.executable, __file__, "--device", args.device, "--out", str(out), "--check", *names,
               "--limit_s", *(f"{limit:.0f}" for limit in limits), *(["--smoke"] if args.smoke else [])]
    log_path = out / f"{names[0]}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            process.wait(timeout=sum(limits) + 30)
        except subprocess.TimeoutExpired:
            pass  # hung in native code, where SIGALRM cannot reach: the parent ends it
        if process.poll() is None:
            process.terminate()  # unwinds the check in the child, which stops what it started
            try:
                process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left in the child's group
        except ProcessLookupError:
            pass
        process.wait()
    results = {}
    for name in names:
        path = out / f"{name}.json"
        if not path.exists():
            break
        results[name] = json.loads(path.read_text())
    if len(results) < len(names) and names[len(results)] not in results:
        # The check that was running when the child died or hung.
        tail = log_path.read_text()[-1500:]
        results[names[len(results)]] = dict(status="fail", error=f"the check's process ended (exit status "
                                                                  f"{process.returncode}): {tail}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--smoke", action="store_true", help="every check at toy size (for the CPU and the tests)")
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.md, gpu_check.json, logs")
    parser.add_argument("--budget_s", type=float, default=None,
                        help="wall-clock budget of the whole run; each check gets the smaller of its own limit "
                             "and what is left (default: 470 s on a GPU, 8 minutes less start-up; with --smoke "
                             "none, only each check's limit)")
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), help="run only these checks")
    parser.add_argument("--check", nargs="+", choices=sorted(CHECKS), help=argparse.SUPPRESS)  # a child's checks
    parser.add_argument("--limit_s", nargs="+", type=float, help=argparse.SUPPRESS)  # and their time limits
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.check:
        return run_checks(args)

    import gpu_check_runs
    if args.budget_s is None:
        args.budget_s = float("inf") if args.smoke else 470
    deadline = time.monotonic() + args.budget_s
    results, pending = {}, []
    for name, (limit, cpu_skip) in CHECKS.items():
        if args.only and name not in args.only:
            continue
        if cpu_skip and args.device == "cpu":
            results[name] = dict(status="skipped", error=cpu_skip)
        else:
            pending.append((name, SMOKE_LIMIT_S if args.smoke else limit))
    # On a GPU one process per check: a CUDA error can leave a process unusable. At toy size one process
    # for all (a process start costs more than most checks); a crash costs the one check, then the rest go on.
    while pending:
        left = deadline - time.monotonic()
        if left < 5:
            results.update({name: dict(status="skipped", error=f"--budget_s {args.budget_s:.0f} spent")
                            for name, _ in pending})
            break
        batch = pending if args.smoke else pending[:1]
        names, limits = [n for n, _ in batch], [min(limit, left) for _, limit in batch]
        done = launch(names, limits, args, out)
        for name in names[:len(done)]:
            results[name] = done[name]
            r = results[name]
            print(f"{name}: {r['status']}{' (' + r['error'][:300] + ')' if r.get('error') else ''}", flush=True)
        pending = pending[max(len(done), 1):]
    summary = gpu_check_runs.summary(results)
    (out / "gpu_check.md").write_text(gpu_check_runs.markdown(results, summary, args))
    report = dict(ok=all(r["status"] in ("pass", "skipped") for r in results.values()),
                  device=args.device, smoke=args.smoke, summary=summary,
                  checks={name: {k: v for k, v in r.items() if k != "traceback"} for name, r in results.items()})
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"tables in {out / 'gpu_check.md'}")
    print(json.dumps(report, default=str))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
