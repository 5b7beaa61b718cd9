"""k-NN on features with a known answer; feature extraction of a clip list to a file."""
import math

import pytest
import torch

import eval_knn
import extract_features
from dist_utils import DistEnv
from checkpoint import load_checkpoint

ENCODER = ["--model", "vit_tiny_patch16_224", "--input_size", "32", "--short_side_size", "32", "--num_frames", "4",
           "--sampling_rate", "2", "--batch_size", "4", "--num_workers", "0", "--device", "cpu"]


def test_weighted_vote_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 3.0]])  # cosine to (1, 0): 1.0, 0.0, 0.8
    labels = torch.tensor([0, 1, 1])
    scores = eval_knn.knn_classify(bank, labels, torch.tensor([[3.0, 0.0]]), num_classes=3, k=2, temperature=0.5)
    # The two nearest are bank 0 (label 0, similarity 1) and bank 2 (label 1, similarity 0.8).
    expected = torch.tensor([[math.exp(1 / 0.5), math.exp(0.8 / 0.5), 0.0]])
    torch.testing.assert_close(scores, expected)
    # k beyond the bank takes the whole bank: bank 1 adds exp(0) to label 1.
    scores = eval_knn.knn_classify(bank, labels, torch.tensor([[3.0, 0.0]]), num_classes=3, k=200, temperature=0.5)
    torch.testing.assert_close(scores, expected + torch.tensor([[0.0, 1.0, 0.0]]))


def test_clusters_are_recovered_and_the_temperature_weighs_the_nearest():
    torch.manual_seed(0)
    centres = torch.randn(5, 16) * 3
    bank_labels = torch.arange(5).repeat_interleave(40)
    bank = centres[bank_labels] + torch.randn(200, 16)
    query_labels = torch.arange(5).repeat(10)
    queries = centres[query_labels] + torch.randn(50, 16)
    scores = eval_knn.knn_classify(bank, bank_labels, queries, num_classes=5, k=20, temperature=0.07)
    assert torch.equal(scores.argmax(dim=1), query_labels)
    # A query on top of one bank point of class 1, with 20 points of class 0 further away (cosine 0.71):
    # a plain majority says 0, sharp weights exp(sim / T) say 1.
    bank = torch.cat([torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]).expand(20, 2)])
    labels = torch.tensor([1] + [0] * 20)
    sharp = eval_knn.knn_classify(bank, labels, torch.tensor([[1.0, 0.0]]), num_classes=2, k=21, temperature=0.05)
    flat = eval_knn.knn_classify(bank, labels, torch.tensor([[1.0, 0.0]]), num_classes=2, k=21, temperature=10.0)
    assert sharp.argmax().item() == 1 and flat.argmax().item() == 0


def test_extract_pooled_and_token_features_of_a_list(synthetic_videos, tmp_path):
    out = tmp_path / "features.pt"
    argv = ["--data_path", str(synthetic_videos / "test.csv"), *ENCODER, "--output", str(out)]
    extract_features.main(extract_features.get_args_parser().parse_args(argv))
    pooled = load_checkpoint(out)
    lines = (synthetic_videos / "test.csv").read_text().splitlines()
    assert pooled["features"].shape == (8, 192) and pooled["grid"] == (2, 2, 2) and pooled["bad_paths"] == []
    assert pooled["labels"].tolist() == [int(line.split()[1]) for line in lines]
    assert pooled["paths"] == [str(synthetic_videos / line.split()[0]) for line in lines]

    extract_features.main(extract_features.get_args_parser().parse_args(argv + ["--tokens"]))
    tokens = load_checkpoint(out)
    assert tokens["features"].shape == (8, 8, 192) and tokens["pooling"] == "tokens"
    # Without mean pooling the encoder keeps its final norm; the pooled feature is the tokens' mean.
    torch.testing.assert_close(tokens["features"].mean(dim=1), pooled["features"], rtol=1e-4, atol=1e-5)


def test_knn_of_a_random_encoder_runs_on_train_and_val_lists(synthetic_videos, capsys):
    from scripts.demo_linear_probe import KNN_RESULT

    argv = ["--data_path", str(synthetic_videos), "--nb_classes", "4", "--nb_knn", "5", "200", *ENCODER]
    results = eval_knn.evaluate(eval_knn.get_args_parser().parse_args(argv), DistEnv(0, 0, 1, torch.device("cpu")))
    assert sorted(results) == [5, 12]  # k = 200 is capped at the 12 training videos
    for scores in results.values():
        assert (scores["queries"], scores["bank"]) == (8, 12)
        # 8 queries: accuracies in eighths, and top-5 of 4 classes always right
        assert scores["acc1"] * 8 / 100 == pytest.approx(round(scores["acc1"] * 8 / 100)) and scores["acc5"] == 100
    # The demo reads these results from the printed lines.
    printed = KNN_RESULT.findall(capsys.readouterr().out)
    assert [(int(n), float(acc1)) for n, acc1 in printed] == [(8, round(results[k]["acc1"], 2)) for k in (5, 12)]
