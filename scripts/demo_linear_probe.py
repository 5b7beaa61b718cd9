"""The demo's last step: the same evaluations of four encoders on the same videos, side by side.

    python scripts/demo_linear_probe.py --data demo_output/data \\
        --sigma demo_output/pretrain_sigma_mlp --videomae demo_output/pretrain_videomae_pixel \\
        --supervised demo_output/supervised --output_dir demo_output/probes

Evaluates, with identical settings, the encoder of
  - a random initialisation of the same architecture (the floor any pretraining must beat),
  - VideoMAE: the newest checkpoint of a pixel-target run (--videomae),
  - SIGMA: the newest checkpoint of the run in --sigma, with the same budget,
  - supervised: the encoder of a classifier trained end to end with the labels of
    train.csv from a random initialisation, for as many steps (--supervised, a
    run_class_finetuning.py output directory): the ceiling, what the architecture can
    learn of these classes in the budget; its own head's test top-1 is printed too,
twice each:
  - linear probe: run_class_finetuning.py --linear_probing on cached features (fc_norm and
    head on the frozen encoder's mean-pooled tokens), trained on train.csv, top-1 on
    test.csv; the command is the one FINETUNE.md documents ("Linear probing on your own
    clip lists");
  - k-NN: eval_knn.py, train.csv as the bank and val.csv as the queries.
Prints a table beside chance (the test and validation lists are balanced, so chance is
also what always answering the most frequent class gets) and writes it to
OUTPUT_DIR/results.json. The architecture and clip settings (--model, --depth,
--patch_size, --input_size, --num_frames, --sampling_rate) come from the SIGMA run's
args.json; the VideoMAE and supervised runs must match them.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from datasets import read_clip_list  # noqa: E402  (needs REPO on sys.path)
from scripts.summarize_pretraining import collapse_signs, read_run  # noqa: E402

# The probe: fc_norm + head on the frozen encoder's pooled features, computed once per clip,
# with the published probe's optimiser and an lr near its per-step value (3e-3). Only the
# test is reported, so the per-epoch validation is skipped.
PROBE_FLAGS = ["--linear_probing", "--mixup", "0", "--cutmix", "0", "--aa", "none", "--reprob", "0",
               "--batch_size", "32", "--lr", "0.02", "--epochs", "50", "--warmup_epochs", "5",
               "--disable_eval_during_finetuning", "--test_num_segment", "2", "--test_num_crop", "1",
               "--save_ckpt_freq", "1000"]
# Lines of an evaluation's output shown on the terminal (the full output goes to its log): the
# training progress (about every 10 s: the default --print_freq) and what feature extraction did.
# The probe's epochs take a fraction of a second: one of its progress lines per SHOW_EVERY_S is enough.
SHOW_EVERY_S = 5.0
PROGRESS_LINE = re.compile(r"^(Epoch \[\d+/\d+\] \[ *\d+/\d+\]  eta \S+ \(run \S+)|^(features of \d+ videos in \d+ s)")
# k-NN: DINO's weighted vote; k is small because the demo's bank holds a few hundred videos.
KNN_K = 20
KNN_RESULT = re.compile(r"k-NN \(k=\d+, T=[\d.]+\) of (\d+) val videos .*?top-1 ([\d.]+)%")
# The demo's three checks that its experiment can be read (PRETRAIN.md, "The demo's data and settings"):
# the classes can be learned by this encoder in the budget, and so can each pretext.
CEILING_AT_LEAST = 60.0    # % top-1 of the supervised run's own classifier on test
PIXEL_LOSS_AT_MOST = 0.90  # VideoMAE's normalised-pixel loss in the last epoch (predicting 0 gives about 1)
SIGMA_OVER_MAJORITY = 2.0  # SIGMA's model accuracy as a multiple of its majority baseline, in the last epoch
ENCODERS = (("random_init", "random init"), ("videomae", "VideoMAE"), ("sigma", "SIGMA"), ("supervised", "supervised"))


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True,
                        help="directory of train.csv, val.csv, test.csv (paths relative to it, labels from 0)")
    parser.add_argument("--sigma", required=True, help="output directory of the SIGMA pretraining run")
    parser.add_argument("--videomae", required=True, help="output directory of the pixel-target (VideoMAE) run")
    parser.add_argument("--supervised", required=True,
                        help="output directory of run_class_finetuning.py trained from a random initialisation")
    parser.add_argument("--output_dir", required=True, help="where the evaluation runs write their outputs")
    parser.add_argument("--num_workers", type=int, default=2, help="data loader processes")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random encoder and the probes")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the evaluations")
    return parser


def run_settings(run_dir):
    """Classifier flags matching a pretraining run: its model and clip settings, from args.json."""
    path = os.path.join(run_dir, "args.json")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} not found: is {run_dir} the --output_dir of a run_sigma_pretraining.py run?")
    with open(path) as f:
        saved = json.load(f)
    model = saved["model"].replace("pretrain_videomae_", "vit_")
    settings = ["--model", model, "--input_size", str(saved["input_size"]), "--short_side_size",
                str(saved["input_size"]), "--num_frames", str(saved["num_frames"]), "--sampling_rate",
                str(saved["sampling_rate"])]
    for flag in ("depth", "patch_size"):
        if saved.get(flag) is not None:
            settings += [f"--{flag}", str(saved[flag])]
    return settings


def labels_of(data, split):
    return [label for _, label in read_clip_list(os.path.join(data, f"{split}.csv"))]


def majority_share(labels):
    """Share of the most frequent class: what always answering it scores."""
    return max(Counter(labels).values()) / len(labels)


def run_logged(command, log_path, label):
    """Runs `command` with its output in `log_path` (the command first); shows its progress lines, shortened,
    prefixed by `label`, so that minutes of work are not minutes of silence."""
    with open(log_path, "w") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        last_epoch_shown = -SHOW_EVERY_S
        for line in process.stdout:
            log.write(line)
            shown = PROGRESS_LINE.match(line)
            if shown and shown.group(1):
                if time.monotonic() - last_epoch_shown < SHOW_EVERY_S:
                    continue
                last_epoch_shown = time.monotonic()
            if shown:
                print(f"   {label}: {shown.group(1) + ' of the probe)' if shown.group(1) else shown.group(2)}",
                      flush=True)
        if process.wait():
            raise SystemExit(f"{os.path.basename(command[1])} failed (exit status {process.returncode}); "
                             f"see {log_path}")


def linear_probe(name, checkpoint, settings, num_classes, args):
    """Test top-1 (%) of a linear probe on the encoder, read from the run's log.txt."""
    output_dir = os.path.join(args.output_dir, name)
    command = [args.python, os.path.join(REPO, "run_class_finetuning.py"), "--data_set", "custom",
               "--nb_classes", str(num_classes), "--data_path", args.data, *settings, *PROBE_FLAGS,
               "--num_workers", str(args.num_workers), "--seed", str(args.seed), "--output_dir", output_dir]
    if checkpoint:
        command += ["--finetune", checkpoint]
    run_logged(command, os.path.join(args.output_dir, f"{name}_probe.log"), "linear probe")
    with open(os.path.join(output_dir, "log.txt")) as f:
        records = [json.loads(line) for line in f]
    return next(record for record in reversed(records) if "test_acc1" in record)["test_acc1"]


def knn(name, checkpoint, settings, num_classes, args):
    """Top-1 (%) of the k-NN vote of the val videos against the train videos."""
    command = [args.python, os.path.join(REPO, "eval_knn.py"), "--data_path", args.data,
               "--nb_classes", str(num_classes), *settings, "--nb_knn", str(KNN_K),
               "--num_workers", str(args.num_workers), "--seed", str(args.seed)]
    if checkpoint:
        command += ["--finetune", checkpoint]
    log_path = os.path.join(args.output_dir, f"{name}_knn.log")
    run_logged(command, log_path, "k-NN")
    with open(log_path) as f:
        found = KNN_RESULT.findall(f.read())
    if not found:
        raise SystemExit(f"no k-NN result in {log_path}")
    return float(found[-1][1])


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    settings = run_settings(args.sigma)
    for other in (args.videomae, args.supervised):
        if run_settings(other) != settings:
            raise SystemExit(f"{other} and {args.sigma} trained different models or clips; "
                             "the comparison needs the same ones")
    num_classes = 1 + max(labels_of(args.data, "train"))
    test_majority, val_majority = (majority_share(labels_of(args.data, split)) for split in ("test", "val"))
    checkpoints = {"random_init": None, "sigma": os.path.join(args.sigma, "checkpoint-latest.pth"),
                   "videomae": os.path.join(args.videomae, "checkpoint-latest.pth"),
                   "supervised": os.path.join(args.supervised, "checkpoint-latest.pth")}
    results = {}
    for name, label in ENCODERS:
        start = time.time()
        print(f"-- {label}: linear probe and k-NN (logs: {args.output_dir}/{name}_*.log)", flush=True)
        results[name] = {"linear_probe": linear_probe(name, checkpoints[name], settings, num_classes, args),
                         "knn": knn(name, checkpoints[name], settings, num_classes, args)}
        print(f"   done in {time.time() - start:.0f} s", flush=True)
    results["chance"] = {"linear_probe": 100 * test_majority, "knn": 100 * val_majority}
    results["supervised"]["end_to_end"] = supervised_test_top1(args.supervised)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(format_table(results))
    print(format_checks(results, args.videomae, args.sigma))
    return results


def supervised_test_top1(run_dir):
    """Test top-1 (%) of the supervised run's own classifier, from its log.txt."""
    path = os.path.join(run_dir, "log.txt")
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    scores = [record["test_acc1"] for record in records if "test_acc1" in record]
    if not scores:
        raise SystemExit(f"{path} has no test score: did the supervised run finish?")
    return scores[-1]


def format_checks(results, videomae_dir, sigma_dir):
    """Whether the classes and both pretexts were learnable in this budget: a line each, passed or not."""
    def verdict(passed):
        return "pass" if passed else "FAIL"

    ceiling = results["supervised"]["end_to_end"]
    _, pixel_epochs = read_run(videomae_dir)
    sigma_args, sigma_epochs = read_run(sigma_dir)
    loss, last = pixel_epochs[-1]["train_loss"], sigma_epochs[-1]
    accuracy, majority = last["train_model_accuracy"], last["train_model_majority"]
    signs = collapse_signs(last, sigma_args["num_prototypes"])
    return "\n".join([
        "  can anything be learned here? (PRETRAIN.md, \"The demo's data and settings\")",
        f"    {verdict(ceiling >= CEILING_AT_LEAST):<5} the classes: the supervised classifier's test top-1 {ceiling:.1f}% "
        f"(at least {CEILING_AT_LEAST:.0f}%)",
        f"    {verdict(loss <= PIXEL_LOSS_AT_MOST):<5} VideoMAE's pretext: last epoch's pixel loss {loss:.3f} (at most "
        f"{PIXEL_LOSS_AT_MOST:.2f}; predicting 0 gives about 1)",
        f"    {verdict(accuracy >= SIGMA_OVER_MAJORITY * majority and not signs):<5} SIGMA's pretext: predicts phi's "
        f"cluster {accuracy:.1%}, {accuracy / max(majority, 1e-9):.1f}x always naming the most frequent "
        f"({majority:.1%}; at least {SIGMA_OVER_MAJORITY:.0f}x), {'collapsed' if signs else 'no collapse'}"])


def format_table(results):
    """The side-by-side table of linear probe and k-NN top-1 per encoder, with chance; the supervised
    classifier's own test top-1 below it."""
    lines = [f"  {'':<14}{'linear probe':>14}{f'k-NN (k={KNN_K})':>14}",
             f"  {'':<14}{'(test)':>14}{'(val)':>14}"]
    for name, label in (*ENCODERS, ("chance", "chance")):
        row = results[name]
        lines.append(f"  {label:<14}{row['linear_probe']:>13.1f}%{row['knn']:>13.1f}%")
    if "end_to_end" in results.get("supervised", {}):
        lines.append(f"  (supervised, its own classifier trained end to end: {results['supervised']['end_to_end']:.1f}% "
                     "on test)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
