"""scripts/plot_log.py: the curves it draws are the log's values, and it writes a PNG."""
import json

import pytest

from scripts import plot_log


def fake_run(directory, target_type, records):
    directory.mkdir()
    (directory / "args.json").write_text(json.dumps({"target_type": target_type}))
    (directory / "log.txt").write_text("".join(json.dumps(record) + "\n" for record in records))
    return directory


def test_panels_hold_the_logged_values(tmp_path):
    sigma = fake_run(tmp_path / "sigma", "mlp", [
        {"epoch": 0, "train_loss": 8.0, "train_model_accuracy": 0.02, "train_model_majority": 0.03,
         "train_model_usage": 0.3, "train_phi_cosine": 0.7},
        {"epoch": 1, "train_loss": 6.0, "train_model_accuracy": 0.05, "train_model_majority": 0.03,
         "train_model_usage": 0.5, "train_phi_cosine": 0.8}])
    pixel = fake_run(tmp_path / "pixel", "pixel", [{"epoch": 0, "train_loss": 1.0}, {"epoch": 1, "train_loss": 0.9}])
    probes = {"random_init": {"linear_probe": 14.0, "knn": 12.0}, "sigma": {"linear_probe": 20.0, "knn": 18.0},
              "videomae": {"linear_probe": 15.0, "knn": 13.0}, "chance": {"linear_probe": 12.5, "knn": 12.5}}
    figure = plot_log.draw([sigma, pixel], probes)
    axes = {ax.get_title(): ax for ax in figure.axes if ax.get_title()}
    assert sorted(axes) == ["collapse", "loss", "probes of the encoders", "prototype usage", "target agreement"]
    # The loss relative to the first epoch, so that both runs share an axis.
    losses = {line.get_label(): list(line.get_ydata()) for line in axes["loss"].lines}
    assert losses == {"sigma (mlp)": [1.0, 0.75], "pixel (pixel)": [1.0, pytest.approx(0.9)]}
    agreement = {line.get_label(): list(line.get_ydata()) for line in axes["target agreement"].lines}
    assert agreement == {"sigma (mlp) predicts phi's target": [0.02, 0.05],
                         "sigma (mlp) most frequent target": [0.03, 0.03]}
    bars = [patch.get_height() for patch in axes["probes of the encoders"].patches]
    # In ENCODERS order (random init, VideoMAE, SIGMA), linear probes first, then k-NN.
    assert bars == [14.0, 15.0, 20.0, 12.0, 13.0, 18.0]


def test_writes_a_png(tmp_path):
    run = fake_run(tmp_path / "run", "mlp", [{"epoch": 0, "train_loss": 8.0}])
    out = plot_log.main([str(run)])
    assert out == str(run / "run.png")
    assert (run / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        plot_log.main([str(run), "--probes", str(tmp_path / "missing.json")])
