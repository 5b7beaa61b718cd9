"""The demo's table over seeds: mean and spread of each encoder's accuracies, and SIGMA's margins.

    python scripts/summarize_demo_seeds.py demo_seeds/seed_0 demo_seeds/seed_1 demo_seeds/seed_2

Reads DEMO_DIR/probes/results.json of each demo run (scripts/demo_linear_probe.py
writes it) and prints, per encoder (random init, VideoMAE, SIGMA, supervised) and
evaluation, the mean over the runs with the sample standard deviation and the per-run
values; then the per-run differences SIGMA minus random init and SIGMA minus VideoMAE,
with their mean and spread; then the supervised classifier's own test top-1. Each run is one
seed of everything: the videos, the pretraining and the probes (scripts/demo_seeds.sh).
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.demo_linear_probe import ENCODERS  # noqa: E402  (needs the repository on sys.path)

EVALUATIONS = (("linear_probe", "linear probe (test)"), ("knn", "k-NN (val)"))


def read_results(demo_dirs):
    results = []
    for demo_dir in demo_dirs:
        path = os.path.join(demo_dir, "probes", "results.json")
        if not os.path.isfile(path):
            sys.exit(f"{path} does not exist: did the demo in {demo_dir} finish?")
        with open(path) as f:
            results.append(json.load(f))
    return results


def spread(values):
    """'mean +- sample std (v1, v2, ...)' of a list of percentages."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.1f} +- {std:4.1f}  ({', '.join(f'{v:.1f}' for v in values)})"


def format_seed_table(results):
    lines = [f"{len(results)} runs, top-1 % as mean +- sample std (per run)"]
    for key, title in EVALUATIONS:
        lines.append(f"  {title}")
        for name, label in (*ENCODERS, ("chance", "chance")):
            lines.append(f"    {label:<26}{spread([r[name][key] for r in results])}")
        for other, label in (("random_init", "SIGMA - random init"), ("videomae", "SIGMA - VideoMAE")):
            lines.append(f"    {label:<26}{spread([r['sigma'][key] - r[other][key] for r in results])}")
    if all("end_to_end" in r.get("supervised", {}) for r in results):
        lines += ["  supervised, its own classifier trained end to end (test)",
                  f"    {'supervised':<26}{spread([r['supervised']['end_to_end'] for r in results])}"]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo_dirs", nargs="+", help="DEMO_DIR of each finished demo run")
    print(format_seed_table(read_results(parser.parse_args(argv).demo_dirs)))


if __name__ == "__main__":
    main()
