"""Draw a pretraining run's epochs as one PNG: loss, prototype usage, target agreement, collapse.

    python scripts/plot_log.py demo_output/pretrain_sigma_mlp
    python scripts/plot_log.py RUN_A RUN_B --probes demo_output/probes/results.json --out demo.png

Reads each RUN_DIR/log.txt (the per-epoch JSON lines of run_sigma_pretraining.py) and
draws, against the epoch:
  - the loss, divided by its first epoch's value so that a SWAV and an L2 run share
    an axis (their scales differ: 2 ln K against about 1);
  - prototype usage: how evenly the video model's predictions and phi's hard targets
    use the K prototypes (SWAV runs);
  - target agreement: how often the video model predicts phi's hard target, beside
    always naming the most frequent target (dashed), the accuracy of learning nothing;
  - collapse: the mean pairwise cosine of phi's and the encoder's features;
and, with --probes (the results.json of scripts/demo_linear_probe.py), the probe and
k-NN accuracies of each encoder as bars beside chance. Writes RUN_DIR/run.png unless
--out says otherwise.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in SLURM jobs
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.demo_linear_probe import ENCODERS  # noqa: E402  (needs the repository on sys.path)
from scripts.summarize_pretraining import read_run  # noqa: E402

# (panel title, y label, [(log key, line label suffix, dashed)])
PANELS = (
    ("loss", "loss / first epoch's", [("train_loss", "", False)]),
    ("prototype usage", "entropy / ln K", [("train_model_usage", "predictions", False),
                                           ("train_model_target_usage", "targets", True)]),
    ("target agreement", "share of masked tubes", [("train_model_accuracy", "predicts phi's target", False),
                                                   ("train_model_majority", "most frequent target", True)]),
    ("collapse", "mean pairwise cosine", [("train_phi_cosine", "phi", False),
                                          ("train_encoder_cosine", "encoder", True)]),
)


def series(records, key):
    """(epochs, values) of the records that have `key`; the loss relative to its first value."""
    pairs = [(record["epoch"], record[key]) for record in records if key in record]
    if key == "train_loss" and pairs:
        first = pairs[0][1]
        pairs = [(epoch, value / first) for epoch, value in pairs]
    return [epoch for epoch, _ in pairs], [value for _, value in pairs]


def run_label(output_dir, args):
    return f"{os.path.basename(os.path.normpath(output_dir))} ({args['target_type']})"


def draw(run_dirs, probes=None):
    """The figure: one panel per PANELS entry, plus the probe bars with `probes`."""
    runs = []
    for run_dir in run_dirs:
        args, records = read_run(run_dir)
        runs.append((run_label(run_dir, args), records))
    panels = len(PANELS) + (probes is not None)
    rows = (panels + 2) // 3
    figure, grid = plt.subplots(rows, 3, figsize=(13, 3.8 * rows), layout="constrained", squeeze=False)
    axes = grid.ravel()
    for ax in axes[panels:]:
        ax.set_axis_off()
    for ax, (title, ylabel, lines) in zip(axes, PANELS):
        for index, (label, records) in enumerate(runs):
            colour = f"C{index}"
            for key, suffix, dashed in lines:
                epochs, values = series(records, key)
                if epochs:
                    ax.plot(epochs, values, color=colour, linestyle="--" if dashed else "-", marker=".",
                            label=f"{label} {suffix}".strip())
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        if ax.lines:
            ax.legend(fontsize="x-small")
    if probes is not None:
        draw_probes(axes[len(PANELS)], probes)
    return figure


def draw_probes(ax, results):
    """Bars of linear-probe and k-NN top-1 per encoder, chance as a line."""
    names = [(name, label) for name, label in ENCODERS if name in results]
    width = 0.38
    for offset, (key, label) in ((-width / 2, ("linear_probe", "linear probe (test)")),
                                 (width / 2, ("knn", "k-NN (val)"))):
        values = [results[name][key] for name, _ in names]
        bars = ax.bar([i + offset for i in range(len(names))], values, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize="x-small")
    ax.axhline(results["chance"]["linear_probe"], color="black", linestyle=":", label="chance")
    ax.set_xticks(range(len(names)), [label for _, label in names])
    ax.set(title="probes of the encoders", ylabel="top-1 %")
    ax.legend(fontsize="x-small")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="--output_dir of run_sigma_pretraining.py runs")
    parser.add_argument("--probes", help="results.json of scripts/demo_linear_probe.py")
    parser.add_argument("--out", help="PNG to write (default: FIRST_RUN_DIR/run.png)")
    args = parser.parse_args(argv)
    probes = None
    if args.probes:
        if not os.path.isfile(args.probes):
            parser.error(f"--probes {args.probes}: no such file")
        with open(args.probes) as f:
            probes = json.load(f)
    out = args.out or os.path.join(args.run_dirs[0], "run.png")
    figure = draw(args.run_dirs, probes)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
