"""Clip-list converters, each on small files written in the official annotation format."""
import json

import pytest

import datasets
from scripts import convert_annotations as ca


def touch(root, *relative_paths):
    for relative in relative_paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x00")


def lines(path):
    return path.read_text().splitlines()


# ---------------------------------------------------------------- Kinetics-400

KINETICS_TRAIN = """label,youtube_id,time_start,time_end,split
abseiling,--07WQ2iBlw,1,11,train
"air drumming",-VtLx-mcPds,14,24,train
abseiling,0wR5jVB-WPk,417,427,train
zumba,zzz_yyy-xx1,0,10,train
"""
KINETICS_VAL = """label,youtube_id,time_start,time_end,split
zumba,a1b2c3d4e5f,3,13,val
air drumming,--nQbRBEz2s,104,114,val
"""


@pytest.fixture
def kinetics(tmp_path):
    (tmp_path / "train.csv").write_text(KINETICS_TRAIN)
    (tmp_path / "val.csv").write_text(KINETICS_VAL)
    return tmp_path


def test_kinetics_split_layout_sorted_classes_and_missing_files(kinetics):
    root = kinetics / "k400"
    # 0wR5jVB-WPk was never downloaded.
    touch(root, "train/--07WQ2iBlw_000001_000011.mp4", "train/-VtLx-mcPds_000014_000024.mp4",
          "train/zzz_yyy-xx1_000000_000010.mp4", "val/a1b2c3d4e5f_000003_000013.mp4",
          "val/--nQbRBEz2s_000104_000114.mp4")
    out = kinetics / "lists"
    ca.main(["kinetics", "--train_csv", str(kinetics / "train.csv"), "--val_csv", str(kinetics / "val.csv"),
             "--video_root", str(root), "--layout", "split", "--out_dir", str(out)])
    assert lines(out / "classes.txt") == ["abseiling", "air drumming", "zumba"]
    assert lines(out / "train.csv") == ["train/--07WQ2iBlw_000001_000011.mp4 0",
                                        "train/-VtLx-mcPds_000014_000024.mp4 1",
                                        "train/zzz_yyy-xx1_000000_000010.mp4 2"]
    assert lines(out / "missing_train.txt") == ["train/0wR5jVB-WPk_000417_000427.mp4"]
    assert lines(out / "val.csv") == ["val/a1b2c3d4e5f_000003_000013.mp4 2", "val/--nQbRBEz2s_000104_000114.mp4 1"]
    assert lines(out / "test.csv") == lines(out / "val.csv")
    # The lists read back with the project's reader, SIGMA's convention (root = video root).
    clips = datasets.read_clip_list(out / "train.csv", root=str(root))
    assert [label for _, label in clips] == [0, 1, 2]
    assert all((root / path).is_file() for path, _ in clips)


def test_kinetics_class_layout_absolute_paths(kinetics):
    root = kinetics / "videos"
    touch(root, "train/abseiling/--07WQ2iBlw_000001_000011.mp4", "val/air_drumming/--nQbRBEz2s_000104_000114.mp4")
    clips, classes = ca.read_kinetics({"train": kinetics / "train.csv", "val": kinetics / "val.csv"},
                                      layout="split_class")
    assert clips["val"][1] == ("val/air_drumming/--nQbRBEz2s_000104_000114.mp4", 1)
    summary = ca.write_clip_lists(kinetics / "lists", clips, root, classes, absolute_paths=True)
    assert summary == {"train": (1, 3), "val": (1, 1), "test": (1, 1)}
    # The VideoMAE convention (--data_path LIST) works from anywhere with absolute paths.
    [(path, label)] = datasets.read_clip_list(kinetics / "lists" / "train.csv")
    assert path == str((root / "train/abseiling/--07WQ2iBlw_000001_000011.mp4").absolute()) and label == 0


@pytest.mark.parametrize("text, message", [
    ("label,youtube_id,time_start,time_end\nabseiling,abc,x1,11\n", "train.csv:2: time_start 'x1' is not an integer"),
    ("label,youtube_id,start,end\n", "train.csv:1: the header lacks time_end, time_start"),
    ("label,youtube_id,time_start,time_end\nabseiling,abc,1,11\nabseiling,abc\n", "train.csv:3: expected label,"),
])
def test_kinetics_malformed_lines_name_file_and_line(kinetics, text, message):
    (kinetics / "train.csv").write_text(text)
    with pytest.raises(ca.AnnotationError, match=message):
        ca.read_kinetics({"train": kinetics / "train.csv"})


def test_kinetics_validation_label_must_be_a_training_class(kinetics):
    (kinetics / "val.csv").write_text(KINETICS_VAL + "yodelling,abcdefghijk,0,10,val\n")
    with pytest.raises(ca.AnnotationError, match=r"val.csv:4: label 'yodelling' is not a class"):
        ca.read_kinetics({"train": kinetics / "train.csv", "val": kinetics / "val.csv"})


def test_wrong_video_root_is_an_error_not_an_empty_list(kinetics, capsys):
    (kinetics / "empty").mkdir()
    with pytest.raises(ca.AnnotationError, match="none of the 4 train videos exist"):
        ca.main(["kinetics", "--train_csv", str(kinetics / "train.csv"), "--val_csv",
                 str(kinetics / "val.csv"), "--video_root", str(kinetics / "empty"),
                 "--out_dir", str(kinetics / "lists")])


# ---------------------------------------------------------------- Something-Something V2

SSV2_LABELS = {"Approaching something with your camera": "0", "Holding something next to something": "1",
               "Pushing something from left to right": "2"}
SSV2_TRAIN = [
    {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
     "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks vaporub bottle"]},
    {"id": "42326", "label": "pushing a pen from left to right",
     "template": "Pushing [something] from left to right", "placeholders": ["a pen"]},
]
SSV2_VAL = [{"id": "74225", "label": "approaching a cup with your camera",
             "template": "Approaching [something] with your camera", "placeholders": ["a cup"]}]


def write_ssv2(tmp_path, train=SSV2_TRAIN, labels=SSV2_LABELS):
    for name, content in (("labels.json", labels), ("train.json", train), ("validation.json", SSV2_VAL)):
        (tmp_path / name).write_text(json.dumps(content))
    return tmp_path / "labels.json", {"train": tmp_path / "train.json", "val": tmp_path / "validation.json"}


def test_ssv2_template_lookup_and_extension(tmp_path):
    labels, splits = write_ssv2(tmp_path)
    touch(tmp_path / "videos", "78687.mp4", "42326.mp4", "74225.mp4")
    ca.main(["ssv2", "--labels", str(labels), "--train_json", str(splits["train"]), "--val_json",
             str(splits["val"]), "--video_root", str(tmp_path / "videos"), "--ext", "mp4",
             "--out_dir", str(tmp_path / "lists")])
    assert lines(tmp_path / "lists" / "train.csv") == ["78687.mp4 1", "42326.mp4 2"]
    assert lines(tmp_path / "lists" / "val.csv") == ["74225.mp4 0"]
    assert lines(tmp_path / "lists" / "test.csv") == ["74225.mp4 0"]
    assert lines(tmp_path / "lists" / "classes.txt")[1] == "Holding something next to something"


def test_ssv2_unknown_template_and_bad_label_map(tmp_path):
    bad_entry = dict(SSV2_TRAIN[0], id="5", template="Dancing with [something]")
    labels, splits = write_ssv2(tmp_path, train=SSV2_TRAIN + [bad_entry])
    with pytest.raises(ca.AnnotationError, match=r"train.json: entry 2 \(id 5\): template 'Dancing with something'"):
        ca.read_ssv2(labels, splits)
    labels, splits = write_ssv2(tmp_path, labels=dict(SSV2_LABELS, extra="7"))
    with pytest.raises(ca.AnnotationError, match="labels.json: the indices are not 0..3"):
        ca.read_ssv2(labels, splits)
    labels, splits = write_ssv2(tmp_path)
    splits["train"].write_text("[{\"id\": 1,")
    with pytest.raises(ca.AnnotationError, match="train.json: not valid JSON"):
        ca.read_ssv2(labels, splits)


# ---------------------------------------------------------------- UCF101

def write_ucf(tmp_path, trainlist="ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
                                  "Archery/v_Archery_g08_c02.avi 3\r\n"):
    split_dir = tmp_path / "ucfTrainTestlist"
    split_dir.mkdir(exist_ok=True)
    # The official files have Windows line endings.
    (split_dir / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n3 Archery\r\n")
    (split_dir / "trainlist01.txt").write_text(trainlist)
    (split_dir / "testlist01.txt").write_text("ApplyLipstick/v_ApplyLipstick_g01_c01.avi\r\n"
                                              "Archery/v_Archery_g01_c01.avi\r\n")
    return split_dir


def test_ucf101_zero_based_labels_and_unlabelled_test_list(tmp_path):
    split_dir = write_ucf(tmp_path)
    clips, classes = ca.read_ucf101(split_dir, split=1, ext="mp4")
    assert classes == ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]
    assert clips["train"] == [("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.mp4", 0), ("Archery/v_Archery_g08_c02.mp4", 2)]
    assert clips["val"] == [("ApplyLipstick/v_ApplyLipstick_g01_c01.mp4", 1), ("Archery/v_Archery_g01_c01.mp4", 2)]


def test_ucf101_errors_name_file_and_line(tmp_path):
    split_dir = write_ucf(tmp_path, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c02.avi 2\n")
    with pytest.raises(ca.AnnotationError, match=r"trainlist01.txt:2: label 2 does not match the class folder 'Archery'"):
        ca.read_ucf101(split_dir)
    split_dir = write_ucf(tmp_path, "Juggling/v_Juggling_g01_c01.avi 4\n")
    with pytest.raises(ca.AnnotationError, match=r"trainlist01.txt:1: expected 'ClassName/video.avi"):
        ca.read_ucf101(split_dir)
    with pytest.raises(ca.AnnotationError, match="trainlist02.txt: no such file"):
        ca.read_ucf101(split_dir, split=2)


# ---------------------------------------------------------------- HMDB51

def write_hmdb(tmp_path, extra=""):
    split_dir = tmp_path / "testTrainMulti_7030_splits"
    split_dir.mkdir(exist_ok=True)
    # Official lines end with a space.
    (split_dir / "brush_hair_test_split1.txt").write_text(
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nAmy_brushing_hair_u_cm_np1_fr_goo_0.avi 2 \n"
        "Blonde_being_brushed_u_cm_np2_ri_med_0.avi 0 \n" + extra)
    (split_dir / "cartwheel_test_split1.txt").write_text("Bodenturnen_cartwheel_f_cm_np1_le_med_0.avi 2 \n")
    (split_dir / "brush_hair_test_split2.txt").write_text("April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2 \n")
    return split_dir


def test_hmdb51_train_test_unused(tmp_path):
    clips, classes = ca.read_hmdb51(write_hmdb(tmp_path), split=1)
    assert classes == ["brush_hair", "cartwheel"]
    assert clips["train"] == [("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0)]
    assert clips["val"] == [("brush_hair/Amy_brushing_hair_u_cm_np1_fr_goo_0.avi", 0),
                            ("cartwheel/Bodenturnen_cartwheel_f_cm_np1_le_med_0.avi", 1)]


def test_hmdb51_errors(tmp_path):
    with pytest.raises(ca.AnnotationError, match=r"brush_hair_test_split1.txt:4: expected 'video.avi 0\|1\|2'"):
        ca.read_hmdb51(write_hmdb(tmp_path, extra="Bad_video.avi 3\n"))
    with pytest.raises(ca.AnnotationError, match="no \\*_test_split3.txt files"):
        ca.read_hmdb51(write_hmdb(tmp_path), split=3)


# ---------------------------------------------------------------- Diving48, FineGym

def test_diving48(tmp_path):
    entries = [{"vid_name": "-mmq0PT-u8k_00155", "label": 33, "start_frame": 0, "end_frame": 76},
               {"vid_name": "8qRmKunCjtY_00016", "label": 0, "start_frame": 0, "end_frame": 78}]
    (tmp_path / "train.json").write_text(json.dumps(entries))
    (tmp_path / "test.json").write_text(json.dumps([{"vid_name": "x", "label": "seven"}]))
    clips = ca.read_diving48({"train": tmp_path / "train.json"})
    assert clips["train"] == [("-mmq0PT-u8k_00155.mp4", 33), ("8qRmKunCjtY_00016.mp4", 0)]
    with pytest.raises(ca.AnnotationError, match=r"test.json: entry 0: label 'seven' is not an integer"):
        ca.read_diving48({"val": tmp_path / "test.json"})


def test_finegym_severe_subsets_relabel_from_zero(tmp_path):
    (tmp_path / "gym99_train.txt").write_text(
        "0LtLS9wROrk_E_002407_002435_A_0003_0005 5\n0LtLS9wROrk_E_002407_002435_A_0006_0008 6\n"
        "A0xAXXysHUo_E_000001_000050_A_0001_0003.mp4 16\nA0xAXXysHUo_E_000100_000150_A_0010_0012 80\n")
    path = {"train": tmp_path / "gym99_train.txt"}
    assert [label for _, label in ca.read_finegym(path)["train"]] == [5, 6, 16, 80]
    assert ca.read_finegym(path, "fx_s1")["train"] == [("0LtLS9wROrk_E_002407_002435_A_0006_0008.mp4", 0),
                                                       ("A0xAXXysHUo_E_000001_000050_A_0001_0003.mp4", 10)]
    assert ca.read_finegym(path, "ub_s1", ext="avi")["train"] == [("A0xAXXysHUo_E_000100_000150_A_0010_0012.avi", 6)]
    (tmp_path / "gym99_train.txt").write_text("clip 99\n")
    with pytest.raises(ca.AnnotationError, match="gym99_train.txt:1: label 99 is not a Gym99 class"):
        ca.read_finegym(path)


# ---------------------------------------------------------------- few-shot and output checks

def test_few_shot_is_seeded_balanced_and_keeps_order(tmp_path):
    source = tmp_path / "train.csv"
    source.write_text("".join(f"v{i:02d}.mp4 {i % 3}\n" for i in range(30)))
    out = tmp_path / "train_4shot.csv"
    ca.main(["few_shot", "--list", str(source), "--examples", "4", "--seed", "7", "--out", str(out)])
    subset = [line.split() for line in lines(out)]
    assert sorted(int(label) for _, label in subset) == [0] * 4 + [1] * 4 + [2] * 4
    assert [name for name, _ in subset] == sorted(name for name, _ in subset)  # original order
    clips = ca.read_clip_list(source)
    assert ca.few_shot(clips, 4, seed=7) == [(name, int(label)) for name, label in subset]
    assert ca.few_shot(clips, 4, seed=8) != ca.few_shot(clips, 4, seed=7)
    with pytest.raises(ca.AnnotationError, match="class 0 has 10 clips, fewer than --examples 11"):
        ca.few_shot(clips, 11)
    source.write_text("v00.mp4 0\nv01.mp4\n")
    with pytest.raises(ca.AnnotationError, match=r"train.csv:2: expected 'path label'"):
        ca.read_clip_list(source)


def test_paths_with_whitespace_are_refused(tmp_path):
    touch(tmp_path, "air drumming/a.mp4")
    with pytest.raises(ca.AnnotationError, match="contains whitespace"):
        ca.write_clip_lists(tmp_path / "lists", {"train": [("air drumming/a.mp4", 0)], "val": []}, tmp_path)
