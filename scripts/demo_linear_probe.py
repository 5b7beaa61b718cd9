"""The demo's last step: linear probes of three encoders on the same videos, side by side.

    python scripts/demo_linear_probe.py --data demo_output/data \\
        --sigma demo_output/pretrain_sigma_mlp --videomae demo_output/pretrain_videomae_pixel \\
        --output_dir demo_output/probes

Probes, with identical settings, the encoder of
  - SIGMA: the newest checkpoint of the run in --sigma,
  - a random initialisation of the same architecture (the floor any pretraining must beat),
  - VideoMAE: the newest checkpoint of a pixel-target run (--videomae), same budget,
and prints their top-1 accuracies on the test list. Each probe is one command of
run_class_finetuning.py --linear_probing on cached features, printed before it runs,
the same command FINETUNE.md documents ("Linear probing on your own clip lists"). The
architecture and clip settings (--model, --input_size, --num_frames, --sampling_rate)
come from the SIGMA run's args.json; the VideoMAE run must match them.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The probe: fc_norm + head on the frozen encoder's pooled features, computed once per clip,
# with the published probe's optimiser and an lr near its per-step value (3e-3). Only the
# test is reported, so the per-epoch validation is skipped.
PROBE_FLAGS = ["--linear_probing", "--mixup", "0", "--cutmix", "0", "--aa", "none", "--reprob", "0",
               "--batch_size", "32", "--lr", "0.02", "--epochs", "50", "--warmup_epochs", "5",
               "--disable_eval_during_finetuning", "--test_num_segment", "2", "--test_num_crop", "1",
               "--print_freq", "1000", "--save_ckpt_freq", "1000"]


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True,
                        help="directory of train.csv, val.csv, test.csv (paths relative to it, labels from 0)")
    parser.add_argument("--sigma", required=True, help="output directory of the SIGMA pretraining run")
    parser.add_argument("--videomae", required=True, help="output directory of the pixel-target (VideoMAE) run")
    parser.add_argument("--output_dir", required=True, help="where the three probe runs write their outputs")
    parser.add_argument("--num_workers", type=int, default=2, help="data loader processes")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the probes")
    return parser


def run_settings(run_dir):
    """Classifier flags matching a pretraining run: its model and clip settings, from args.json."""
    path = os.path.join(run_dir, "args.json")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} not found: is {run_dir} the --output_dir of a run_sigma_pretraining.py run?")
    with open(path) as f:
        saved = json.load(f)
    model = saved["model"].replace("pretrain_videomae_", "vit_")
    return ["--model", model, "--input_size", str(saved["input_size"]), "--short_side_size",
            str(saved["input_size"]), "--num_frames", str(saved["num_frames"]), "--sampling_rate",
            str(saved["sampling_rate"])]


def count_classes(data):
    """Classes of a data directory: from the synthetic set's meta.json, else 1 + the largest train label."""
    meta = os.path.join(data, "meta.json")
    if os.path.isfile(meta):
        with open(meta) as f:
            return len(json.load(f)["classes"])
    sys.path.insert(0, REPO)
    from datasets import read_clip_list

    return 1 + max(label for _, label in read_clip_list(os.path.join(data, "train.csv")))


def probe(name, checkpoint, settings, args):
    """Runs one linear probe; returns its test top-1 (in %) from the run's log.txt."""
    output_dir = os.path.join(args.output_dir, name)
    num_classes = count_classes(args.data)
    command = [args.python, os.path.join(REPO, "run_class_finetuning.py"), "--data_set", "custom",
               "--nb_classes", str(num_classes), "--data_path", args.data, *settings, *PROBE_FLAGS,
               "--num_workers", str(args.num_workers), "--output_dir", output_dir]
    if checkpoint:
        command += ["--finetune", checkpoint]
    print(f"-- {name}: {shlex.join(command)}", flush=True)
    with open(os.path.join(args.output_dir, f"{name}.log"), "w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)
    with open(os.path.join(output_dir, "log.txt")) as f:
        records = [json.loads(line) for line in f]
    return next(record for record in reversed(records) if "test_acc1" in record)["test_acc1"]


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    settings = run_settings(args.sigma)
    if run_settings(args.videomae) != settings:
        raise SystemExit(f"{args.videomae} and {args.sigma} pretrained different models or clips; "
                         "the comparison needs the same ones")
    encoders = [("sigma", os.path.join(args.sigma, "checkpoint-latest.pth")), ("random_init", None),
                ("videomae_pixel", os.path.join(args.videomae, "checkpoint-latest.pth"))]
    accuracy = {name: probe(name, checkpoint, settings, args) for name, checkpoint in encoders}
    print("\nlinear probe, top-1 on the test videos (logs in " + args.output_dir + "):")
    print(f"  {'SIGMA':>10}  {'random init':>12}  {'VideoMAE':>10}")
    print(f"  {accuracy['sigma']:>9.1f}%  {accuracy['random_init']:>11.1f}%  {accuracy['videomae_pixel']:>9.1f}%")
    return accuracy


if __name__ == "__main__":
    main()
