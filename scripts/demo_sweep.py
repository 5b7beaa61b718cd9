"""The sweep behind the demo's settings: the same grid for VideoMAE and SIGMA, each setting pretrained
and evaluated with the demo's protocol, and the rule that picks the defaults.

    python scripts/demo_sweep.py --data demo_output/data --out demo_sweep

Grid (PRETRAIN.md, "The demo's data and settings"): learning rate in LRS per 256 clips x
mask ratio in MASK_RATIOS, for
  - VideoMAE (pixel target),
  - SIGMA-MLP as published,
  - SIGMA-MLP with SwAV's small-batch remedies: Sinkhorn epsilon 0.03, prototypes frozen
    through the first epoch, a queue of past tubes started after the first epochs.
Every run uses the demo's encoder, clips, batch, schedule and number of steps
(scripts/demo.sh) on DATA/pretrain.csv (else train.csv). Each encoder is then evaluated on
the validation videos only, never on test: k-NN (train.csv as the bank, val.csv as the
queries) and a linear probe trained on train.csv, scored on val.csv. A random
initialisation is evaluated the same way, as the floor.

The rule: for each method, among its settings whose last epoch shows no sign of collapse
(scripts/summarize_pretraining.py; a collapsed SIGMA is not SIGMA at work, and VideoMAE
has no such signs), the setting of best validation k-NN (ties: best validation linear
probe, then the smaller learning rate). SIGMA's remedies are settings of SIGMA, so they
compete with the published form under the same rule.

Writes OUT/results.json (one record per run), OUT/results.md (the table) and OUT/sweep.png
(validation k-NN and final pretext loss against the learning rate). Runs finished in an
earlier call are read back, so an interrupted sweep continues where it stopped. --jobs N
runs N settings at a time, one thread each.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from scripts.demo_linear_probe import knn, labels_of, linear_probe, majority_share  # noqa: E402
from scripts.summarize_pretraining import collapse_signs, read_run  # noqa: E402

LRS = (1.5e-4, 5e-4, 1e-3, 2e-3, 5e-3)
MASK_RATIOS = (0.75, 0.9)
# The demo's encoder and clips (scripts/demo.sh).
GEOMETRY = ["--model", "pretrain_videomae_tiny_patch16_224", "--depth", "4", "--patch_size", "8", "--input_size", "64",
            "--num_frames", "8", "--sampling_rate", "4"]
METHODS = {
    "videomae": ["--target_type", "pixel", "--loss_func", "L2"],
    "sigma": ["--target_type", "mlp", "--loss_func", "SWAV", "--num_prototypes", "64"],
    # SwAV's small-batch recipe: epsilon 0.03, prototypes frozen for the first epoch, the queue
    # only once the features have settled (here after the first half of the run), 16 steps of tubes.
    "sigma_remedies": ["--target_type", "mlp", "--loss_func", "SWAV", "--num_prototypes", "64",
                       "--sinkhorn_eps", "0.03", "--freeze_prototypes_niters", "{steps_per_epoch}",
                       "--queue_length", "{queue_length}", "--queue_start_epoch", "{queue_start_epoch}"],
}
LABELS = {"videomae": "VideoMAE", "sigma": "SIGMA", "sigma_remedies": "SIGMA + SwAV remedies"}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="directory of train.csv, val.csv (and pretrain.csv)")
    parser.add_argument("--out", required=True, help="where the runs, the table and the plot go")
    parser.add_argument("--epochs", type=int, default=3, help="pretraining epochs: the demo's DEMO_EPOCHS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="settings run at a time, one thread each")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--report", action="store_true",
                        help="train nothing: the table and plot of the settings already finished in --out")
    parser.add_argument("--python", default=sys.executable)
    return parser


def count_lines(path):
    with open(path) as f:
        return sum(1 for line in f if line.strip())


def validation_view(data, out):
    """A directory whose test.csv is the validation list, so that the evaluations score val, never test."""
    view = os.path.join(out, "validation_view")
    os.makedirs(view, exist_ok=True)
    for name in os.listdir(data):
        source = os.path.join(os.path.abspath(data), name)
        if os.path.isdir(source) and not os.path.exists(os.path.join(view, name)):
            os.symlink(source, os.path.join(view, name))
    for split, source in (("train", "train"), ("val", "val"), ("test", "val")):
        shutil.copyfile(os.path.join(data, f"{source}.csv"), os.path.join(view, f"{split}.csv"))
    return view


def run_name(method, lr, mask_ratio):
    return f"{method}_lr{lr:g}_mask{mask_ratio:g}"


def run_setting(method, lr, mask_ratio, args, context):
    """Pretrains one setting and evaluates its encoder; returns its record (read back if already done)."""
    name = run_name(method, lr, mask_ratio)
    run_dir = os.path.join(args.out, name)
    record_path = os.path.join(run_dir, "record.json")
    if os.path.isfile(record_path):
        with open(record_path) as f:
            return json.load(f)
    os.makedirs(run_dir, exist_ok=True)
    flags = [flag.format(**context) for flag in METHODS[method]]
    command = [args.python, os.path.join(REPO, "run_sigma_pretraining.py"), "--data_path", args.data,
               "--data_path_csv", context["pretrain_list"], *GEOMETRY, "--mask_type", "tube",
               "--mask_ratio", str(mask_ratio), "--batch_size", "16", "--epochs", str(args.epochs),
               "--warmup_epochs", "1", "--lr", str(lr), "--min_lr", "1e-5", "--num_workers", "1",
               "--save_ckpt_freq", str(args.epochs), "--seed", str(args.seed), *flags, "--output_dir", run_dir]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    with open(os.path.join(run_dir, "train.log"), "w") as log:
        if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environment).returncode:
            raise SystemExit(f"{name} failed: see {run_dir}/train.log")
    record = dict(method=method, lr=lr, mask_ratio=mask_ratio, **evaluate(run_dir, args, context))
    _, epochs = read_run(run_dir)
    last = epochs[-1]
    record.update(loss_first=epochs[0]["train_loss"], loss=last["train_loss"])
    for key in ("model_accuracy", "model_majority", "model_usage", "phi_cosine", "model_max_q", "encoder_cosine"):
        if f"train_{key}" in last:
            record[key] = last[f"train_{key}"]
    if method != "videomae":
        record["collapse"] = collapse_signs(last, 64)
    with open(record_path, "w") as f:
        json.dump(record, f, indent=2)
    return record


def evaluate(run_dir, args, context, checkpoint="checkpoint-latest.pth"):
    """Validation k-NN and linear probe (%) of a run's encoder (run_dir None: a random initialisation)."""
    out = os.path.join(run_dir or os.path.join(args.out, "random_init"), "evaluation")
    os.makedirs(out, exist_ok=True)
    probe_args = SimpleNamespace(output_dir=out, data=context["view"], python=args.python, num_workers=1,
                                 seed=args.seed)
    path = os.path.join(run_dir, checkpoint) if run_dir else None
    settings = classifier_settings()
    return dict(knn=knn("encoder", path, settings, context["num_classes"], probe_args),
                linear_probe=linear_probe("encoder", path, settings, context["num_classes"], probe_args))


def classifier_settings():
    """GEOMETRY as the evaluation scripts' flags: the classifier preset of the same size, evaluation views at
    the input size (what demo_linear_probe.run_settings makes of a run's args.json)."""
    flags = dict(zip(GEOMETRY[::2], GEOMETRY[1::2]))
    flags["--model"] = flags["--model"].replace("pretrain_videomae_", "vit_")
    flags["--short_side_size"] = flags["--input_size"]
    return [word for flag in flags.items() for word in flag]


def choose(records):
    """The rule: per method, among the settings that show no sign of collapse, the best validation k-NN, then
    the best validation linear probe, then the smaller lr."""
    chosen = {}
    for method in {record["method"] for record in records}:
        candidates = [r for r in records if r["method"] == method and not r.get("collapse")]
        if not candidates:
            continue
        chosen[method] = max(candidates, key=lambda r: (r["knn"], r["linear_probe"], -r["lr"]))
    best_sigma = max((chosen[m] for m in ("sigma", "sigma_remedies") if m in chosen),
                     key=lambda r: (r["knn"], r["linear_probe"], -r["lr"]), default=None)
    return chosen, best_sigma


def format_table(records, floor, chance, chosen):
    def cell(record, key, fmt):
        return format(record[key], fmt) if key in record else "-"

    lines = [f"Validation top-1 %: chance {chance:.1f}, random init k-NN {floor['knn']:.1f} / linear probe "
             f"{floor['linear_probe']:.1f}. Pixel loss: predicting 0 gives about 1. SIGMA's loss: guessing gives "
             f"2 ln 64 = {2 * math.log(64):.2f}; its model accuracy beside always naming the most frequent target.",
             "",
             "| method | lr / 256 | mask | loss first -> last | model acc / majority | usage | phi cos | "
             "collapse | k-NN val | probe val |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (list(METHODS).index(r["method"]), r["mask_ratio"], r["lr"])):
        mark = " **(chosen)**" if chosen.get(r["method"]) is r else ""
        accuracy = (f"{r['model_accuracy']:.1%} / {r['model_majority']:.1%}" if "model_accuracy" in r else "-")
        collapse = "-" if "collapse" not in r else ("yes" if r["collapse"] else "no")
        lines.append(f"| {LABELS[r['method']]}{mark} | {r['lr']:g} | {r['mask_ratio']:g} | "
                     f"{r['loss_first']:.3f} -> {r['loss']:.3f} | {accuracy} | {cell(r, 'model_usage', '.2f')} | "
                     f"{cell(r, 'phi_cosine', '.3f')} | {collapse} | {r['knn']:.1f} | {r['linear_probe']:.1f} |")
    return "\n".join(lines)


def plot(records, floor, chance, path):
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for method in METHODS:
        for mask_ratio, style in zip(MASK_RATIOS, ("-", "--")):
            rows = sorted((r for r in records if r["method"] == method and r["mask_ratio"] == mask_ratio),
                          key=lambda r: r["lr"])
            if not rows:
                continue
            label = f"{LABELS[method]}, mask {mask_ratio:g}"
            lrs = [r["lr"] for r in rows]
            axes[0].plot(lrs, [r["knn"] for r in rows], style, marker="o", label=label)
            axes[1].plot(lrs, [r["linear_probe"] for r in rows], style, marker="o", label=label)
            axes[2].plot(lrs, [r["loss"] / r["loss_first"] for r in rows], style, marker="o", label=label)
    for ax, key, title in ((axes[0], "knn", "k-NN, validation"), (axes[1], "linear_probe", "linear probe, validation")):
        ax.axhline(floor[key], color="grey", label="random init")
        ax.axhline(chance, color="black", linestyle=":", label="chance")
        ax.set(title=title, xlabel="lr per 256 clips", ylabel="top-1 %", xscale="log")
    axes[2].set(title="pretext loss, last epoch / first", xlabel="lr per 256 clips", xscale="log")
    for ax in axes:
        ax.minorticks_off()
        ax.set_xticks(LRS, [f"{lr:g}" for lr in LRS], fontsize=7)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"  # --jobs processes at a time, one core each
    pretrain_list = os.path.join(args.data, "pretrain.csv")
    if not os.path.isfile(pretrain_list):
        pretrain_list = os.path.join(args.data, "train.csv")
    steps_per_epoch = count_lines(pretrain_list) // 16
    context = dict(pretrain_list=pretrain_list, view=validation_view(args.data, args.out),
                   num_classes=1 + max(labels_of(args.data, "train")), steps_per_epoch=steps_per_epoch,
                   queue_length=16 * steps_per_epoch, queue_start_epoch=max(1, args.epochs // 2))
    floor_path = os.path.join(args.out, "random_init.json")
    if not os.path.isfile(floor_path):
        with open(floor_path, "w") as f:
            json.dump(evaluate(None, args, context), f)
    with open(floor_path) as f:
        floor = json.load(f)
    grid = [(method, lr, mask) for method in args.methods for mask in MASK_RATIOS for lr in LRS]
    if args.report:
        grid = [setting for setting in grid if os.path.isfile(os.path.join(args.out, run_name(*setting), "record.json"))]
    with ThreadPoolExecutor(args.jobs) as pool:
        records = list(pool.map(lambda setting: run_setting(*setting, args, context), grid))
    chance = 100 * majority_share(labels_of(args.data, "val"))
    chosen, best_sigma = choose(records)
    table = format_table(records, floor, chance, chosen)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(dict(records=records, random_init=floor, chance=chance,
                       chosen={m: dict(lr=r["lr"], mask_ratio=r["mask_ratio"]) for m, r in chosen.items()}), f, indent=2)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    plot(records, floor, chance, os.path.join(args.out, "sweep.png"))
    print(table)
    for method, record in chosen.items():
        print(f"chosen for {LABELS[method]}: lr {record['lr']:g} per 256, mask ratio {record['mask_ratio']:g}")
    if best_sigma is not None:
        print(f"SIGMA's demo setting: {LABELS[best_sigma['method']]}, lr {best_sigma['lr']:g}, "
              f"mask {best_sigma['mask_ratio']:g}")


if __name__ == "__main__":
    main()
