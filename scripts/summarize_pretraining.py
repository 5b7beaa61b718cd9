"""Summarise a pretraining run from its OUTPUT_DIR: loss and prototype usage per epoch, where the files are.

    python scripts/summarize_pretraining.py demo_output/pretrain_sigma_mlp

Reads OUTPUT_DIR/args.json and the per-epoch JSON lines of OUTPUT_DIR/log.txt that
run_sigma_pretraining.py writes.
"""
import argparse
import json
import math
import os
import sys

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values):
    """One character per value, scaled between the smallest and the largest."""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[round((v - low) / span * (len(SPARK) - 1))] for v in values)


def summarize(output_dir):
    log_path = os.path.join(output_dir, "log.txt")
    args_path = os.path.join(output_dir, "args.json")
    for path in (log_path, args_path):
        if not os.path.isfile(path):
            sys.exit(f"{path} does not exist: is {output_dir} the --output_dir of a finished pretraining epoch?")
    with open(args_path, encoding="utf-8") as f:
        args = json.load(f)
    with open(log_path, encoding="utf-8") as f:
        epochs = [json.loads(line) for line in f if line.strip()]
    if not epochs:
        sys.exit(f"{log_path} has no finished epoch yet")
    # A resumed run appends the epochs it redid; keep the last record of each.
    epochs = list({record["epoch"]: record for record in epochs}.values())

    losses = [record["train_loss"] for record in epochs]
    first, last = epochs[0], epochs[-1]
    lines = [f"SIGMA pretraining summary: {output_dir}",
             f"  model        {args['model']}, target {args['target_type']}, loss {args['loss_func']}, "
             f"{args['num_frames']} frames at {args['input_size']} px",
             f"  epochs       {first['epoch']}-{last['epoch']} of {args['epochs']}, "
             f"{args['num_training_steps_per_epoch']} steps of {args['global_batch_size']} clips, "
             f"{last['train_clips_per_s']:.1f} clips/s in the last epoch",
             f"  loss         {losses[0]:.3f} -> {losses[-1]:.3f}   {sparkline(losses)}"]
    if args["loss_func"] == "SWAV":
        k = args["num_prototypes"]
        lines[-1] += f"   (two cross-entropies over K={k} prototypes; guessing gives 2 ln K = {2 * math.log(k):.2f})"
        usage = (first["train_prototype_entropy"], last["train_prototype_entropy"])
        lines.append(f"  prototypes   usage by the video model's predictions {usage[0]:.2f} -> {usage[1]:.2f} "
                     f"(normalised entropy: 1 = all {k} used evenly)")
        if "train_target_accuracy" in last:
            lines.append(f"  targets      the video model picks phi's Sinkhorn cluster for "
                         f"{100 * first['train_target_accuracy']:.1f}% -> {100 * last['train_target_accuracy']:.1f}% "
                         f"of the masked tubes (chance {100 / k:.1f}%)")
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
