"""Multi-view scoring on hand-made predictions, sharding without padding, and re-scoring saved predictions."""
import math

import pytest
import torch
from torch.utils.data import DataLoader

import engine_for_finetuning as engine
from dist_utils import DistEnv

# Probabilities per view; the logits are their logs, so each view's softmax gives them back.
VIEWS = [
    # video_id, view, label, num_bad, probabilities over 6 classes
    (0, 0, 2, 0, [0.10, 0.60, 0.30, 0.00, 0.00, 0.00]),  # alone this view says class 1 ...
    (0, 1, 2, 0, [0.10, 0.10, 0.80, 0.00, 0.00, 0.00]),  # ... the mean says 2: right
    (1, 0, 0, 0, [0.40, 0.50, 0.10, 0.00, 0.00, 0.00]),  # class 1 first, the label 0 second: top-5 only
    (1, 1, 0, 0, [0.40, 0.50, 0.10, 0.00, 0.00, 0.00]),
    (1, 2, 0, 1, [0.00, 0.00, 0.00, 0.00, 0.00, 1.00]),  # undecodable: left out
    (2, 0, 5, 0, [0.30, 0.20, 0.20, 0.15, 0.10, 0.05]),  # the label ranks 6th: wrong at top-5
    (3, 0, 4, 1, [0.00, 0.00, 0.00, 0.00, 1.00, 0.00]),  # no decodable view: not scored
]


def hand_made(order=None):
    rows = [VIEWS[i] for i in (order or range(len(VIEWS)))]
    ids, views, labels, bad = (torch.tensor([row[i] for row in rows]) for i in range(4))
    logits = torch.tensor([row[4] for row in rows]).clamp_min(1e-12).log()
    return logits, ids, views, labels, bad


@pytest.mark.parametrize("order", [None, [5, 2, 0, 6, 4, 3, 1]])
def test_views_are_averaged_per_video_and_scored_once(order):
    scores = engine.merge_views(*hand_made(order))
    assert scores["videos"] == 3 and scores["views"] == 5 and scores["unscored_videos"] == [3]
    assert scores["video_ids"].tolist() == [0, 1, 2] and scores["labels"].tolist() == [2, 0, 5]
    torch.testing.assert_close(scores["probs"][0], torch.tensor([0.10, 0.35, 0.55, 0.0, 0.0, 0.0]))
    assert scores["acc1"] == pytest.approx(100 / 3) and scores["acc5"] == pytest.approx(200 / 3)
    assert scores["mean_class_acc1"] == pytest.approx(100 / 3)  # classes 2, 0, 5: right, wrong, wrong
    line = engine.describe_scores(scores, views_per_video=3)
    assert line.startswith("Accuracy of the network on the 3 test videos (3 views each): top-1 33.33%, top-5 66.67%")
    assert line.endswith("; not scored: 1 video that could not be decoded")


def test_a_view_seen_twice_is_an_error():
    logits, ids, views, labels, bad = hand_made()
    twice = [0, 1, 1]  # what a padding sampler does to an uneven last share
    with pytest.raises(ValueError, match="view 1 of video 0 appears more than once"):
        engine.merge_views(logits[twice], ids[twice], views[twice], labels[twice], bad[twice])


def test_views_disagreeing_on_the_label_are_an_error():
    logits, ids, views, labels, bad = hand_made()
    labels[1] = 3
    with pytest.raises(ValueError, match="disagree on its label"):
        engine.merge_views(logits, ids, views, labels, bad)


def test_top5_with_fewer_than_five_classes_is_always_right():
    scores = engine.merge_views(torch.randn(4, 3), torch.arange(4), torch.zeros(4, dtype=torch.long),
                                torch.tensor([0, 1, 2, 0]))
    assert scores["acc5"] == 100.0


def test_shards_cover_every_item_exactly_once_without_padding():
    shards = [list(engine.ShardSampler(10, rank, 3)) for rank in range(3)]
    assert [len(shard) for shard in shards] == [4, 3, 3]
    assert sorted(sum(shards, [])) == list(range(10))
    assert list(engine.ShardSampler(2, 1, 4)) == [1] and list(engine.ShardSampler(2, 3, 4)) == []


class ToyViews(torch.utils.data.Dataset):
    """Items as the test dataset yields them; the 'video' is a one-hot of the view's true class."""

    def __init__(self, num_videos=5, views=2, classes=4):
        self.views, self.classes = views, classes
        self.length = num_videos * views

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        video_id, view = divmod(index, self.views)
        label = video_id % self.classes
        return dict(video=torch.nn.functional.one_hot(torch.tensor(label), self.classes).float(), label=label,
                    num_bad=0, video_id=video_id, view=view)


def test_inference_is_put_back_in_dataset_order_and_saved_predictions_rescore(tmp_path, capsys):
    dataset = ToyViews()
    env = DistEnv(0, 0, 1, torch.device("cpu"))
    args = type("Args", (), dict(batch_size=3, num_workers=0, pin_mem=False))
    loader = engine.eval_loader(dataset, args, env)
    outputs = engine.gather_outputs(engine.run_inference(lambda x: 5 * x, loader, env.device, "fp32"), env.device)
    assert outputs["index"].tolist() == list(range(10)) and outputs["video_id"].tolist() == [i // 2 for i in range(10)]
    path = tmp_path / "test_predictions.pt"
    engine.save_predictions(outputs, path, [(f"v{i}.mp4", i % 4) for i in range(5)])
    scores = engine.score_predictions(path)
    assert (scores["videos"], scores["acc1"]) == (5, 100.0)
    engine.main([str(path)])
    assert "Accuracy of the network on the 5 test videos: top-1 100.00%" in capsys.readouterr().out

    single = engine.evaluate(lambda x: 5 * x, loader, env.device, "fp32")
    assert single["acc1"] == 100.0 and single["videos"] == 10
    assert single["loss"] == pytest.approx(-math.log(math.exp(5) / (math.exp(5) + 3)), rel=1e-5)


def test_gathering_detects_a_missing_item():
    result = dict(outputs=torch.zeros(2, 3), index=torch.tensor([0, 2]))
    with pytest.raises(RuntimeError, match="each exactly once"):
        engine.gather_outputs(result, torch.device("cpu"))


def test_loader_batches_with_drop_last_are_refused():
    dataset = ToyViews()
    loader = DataLoader(dataset, batch_size=3, sampler=engine.ShardSampler(len(dataset)), drop_last=True)
    with pytest.raises(RuntimeError, match="drop_last=False"):
        engine.run_inference(lambda x: x, loader, torch.device("cpu"), "fp32")
