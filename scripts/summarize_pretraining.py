"""Summarise a pretraining run from its OUTPUT_DIR: loss, collapse diagnostics, where the files are.

    python scripts/summarize_pretraining.py demo_output/pretrain_sigma_mlp

Reads OUTPUT_DIR/args.json and the per-epoch JSON lines of OUTPUT_DIR/log.txt that
run_sigma_pretraining.py writes, and prints the first and last epoch of each
diagnostic of METHOD.md ("Collapse diagnostics") with a sparkline over the epochs,
then the signs of collapse it finds in the last epoch and whether the video model
predicts its targets better than the majority baseline.
"""
import argparse
import json
import math
import os
import sys

SPARK = "▁▂▃▄▅▆▇█"
# The last epoch is called collapsed past these lines (METHOD.md, "Collapse diagnostics").
COLLAPSED_COSINE = 0.95       # phi's features (nearly) all point one way
UNIFORM_MAX_Q = 1.5           # x 1/K: Sinkhorn's assignments (nearly) uniform, their argmax arbitrary
COLLAPSED_USAGE = 0.1         # the video model predicts (nearly) one prototype for every tube
LEARNING_MARGIN = 0.01        # accuracy above the majority baseline that counts as learning


def sparkline(values):
    """One character per value, scaled between the smallest and the largest."""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[round((v - low) / span * (len(SPARK) - 1))] for v in values)


def read_run(output_dir):
    """(args dict, per-epoch records) of a run; a resumed run's repeated epochs count once."""
    log_path = os.path.join(output_dir, "log.txt")
    args_path = os.path.join(output_dir, "args.json")
    for path in (log_path, args_path):
        if not os.path.isfile(path):
            sys.exit(f"{path} does not exist: is {output_dir} the --output_dir of a finished pretraining epoch?")
    with open(args_path, encoding="utf-8") as f:
        args = json.load(f)
    with open(log_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    records = [record for record in records if "epoch" in record]
    if not records:
        sys.exit(f"{log_path} has no finished epoch yet")
    return args, list({record["epoch"]: record for record in records}.values())


def collapse_signs(last, num_prototypes):
    """What in the last epoch's diagnostics says the run has collapsed: a list of sentences."""
    signs = []
    if last.get("train_phi_cosine", 0) > COLLAPSED_COSINE:
        signs.append(f"phi's features all point one way (mean cosine {last['train_phi_cosine']:.3f})")
    if last.get("train_model_max_q", 1) < UNIFORM_MAX_Q / num_prototypes:
        signs.append(f"Sinkhorn's assignments of phi's features are nearly uniform (mean max q "
                     f"{last['train_model_max_q']:.4f}, uniform {1 / num_prototypes:.4f}): their argmax is arbitrary")
    if last.get("train_model_usage", 1) < COLLAPSED_USAGE:
        signs.append(f"the video model predicts nearly one prototype for every tube (usage "
                     f"{last['train_model_usage']:.2f})")
    return signs


def learning_verdict(last):
    """Whether the video model predicts phi's clusters better than always naming the most
    frequent one: a sentence, or None without the statistics (a non-SWAV run)."""
    if "train_model_accuracy" not in last:
        return None
    accuracy, majority = last["train_model_accuracy"], last["train_model_majority"]
    if accuracy < majority + LEARNING_MARGIN:
        return (f"NOT LEARNING: the video model's accuracy ({accuracy:.1%}) is no better than always "
                f"predicting the most frequent target ({majority:.1%})")
    return f"the video model's accuracy ({accuracy:.1%}) is above the majority baseline ({majority:.1%})"


def summarize(output_dir):
    args, epochs = read_run(output_dir)
    first, last = epochs[0], epochs[-1]

    def row(label, key, fmt, note=""):
        values = [record[key] for record in epochs if key in record]
        if not values:
            return None
        text = f"    {label:<38}{format(values[0], fmt):>8} -> {format(values[-1], fmt):<8} {sparkline(values)}"
        return text + (f"   {note}" if note else "")

    lines = [f"pretraining summary: {output_dir}",
             f"  model        {args['model']}, target {args['target_type']}, loss {args['loss_func']}, "
             f"{args['num_frames']} frames at {args['input_size']} px",
             f"  epochs       {first['epoch']}-{last['epoch']} of {args['epochs']}, "
             f"{args['num_training_steps_per_epoch']} steps of {args['global_batch_size']} clips, "
             f"{last['train_clips_per_s']:.1f} clips/s in the last epoch",
             "  first -> last epoch:"]
    swav = args["loss_func"] == "SWAV"
    k = args.get("num_prototypes")
    rows = [row("loss", "train_loss", ".3f",
                f"guessing gives 2 ln K = {2 * math.log(k):.2f}" if swav else "predicting 0 gives about 1")]
    if swav:
        rows += [
            row("video model: predicts phi's cluster", "train_model_accuracy", ".1%"),
            row("  always the most frequent one", "train_model_majority", ".1%",
                "(the accuracy of a model that learned nothing)"),
            row("  usage of the prototypes it predicts", "train_model_usage", ".2f",
                f"(1 = all {k} evenly, 0 = one)"),
            row("phi: predicts the model's cluster", "train_phi_accuracy", ".1%"),
            row("  always the most frequent one", "train_phi_majority", ".1%"),
            row("  feature cosine", "train_phi_cosine", ".3f", "(1 = all one direction)"),
            row("  feature effective rank", "train_phi_rank", ".1f"),
            row("  Sinkhorn confidence, mean max q", "train_model_max_q", ".4f", f"(uniform {1 / k:.4f})"),
        ]
    rows += [row("encoder: feature cosine", "train_encoder_cosine", ".3f"),
             row("  feature effective rank", "train_encoder_rank", ".1f")]
    lines += [text for text in rows if text]
    if swav:
        signs = collapse_signs(last, k)
        lines.append("  collapse     " + ("none of its signs in the last epoch" if not signs else
                                          "COLLAPSED in the last epoch:"))
        lines += [f"    - {sign}" for sign in signs]
        verdict = learning_verdict(last)
        if verdict:
            lines.append("  learning     " + verdict)
    if last.get("train_bad_videos"):
        lines.append(f"  bad videos   {last['train_bad_videos']} replaced in the last epoch")
    lines.append(f"  checkpoint   {os.path.join(output_dir, 'checkpoint-latest.pth')}")
    if args.get("log_dir"):
        lines.append(f"  TensorBoard  tensorboard --logdir {args['log_dir']}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", help="--output_dir of run_sigma_pretraining.py")
    print(summarize(parser.parse_args(argv).output_dir))


if __name__ == "__main__":
    main()
