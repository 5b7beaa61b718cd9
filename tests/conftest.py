"""Fixtures shared by the test suite.

The repository root goes on sys.path so that tests import the top-level modules
(`import datasets`, `import modeling_pretrain`) and the tools in scripts/
(`from scripts import make_synthetic_videos`) the way the training scripts do.
"""
import sys
from pathlib import Path

import pytest
import torch

# Each pytest-xdist worker gets one core: two workers of two threads each on two
# cores slow small ops down about tenfold. (Subprocesses set their own threads.)
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts import make_synthetic_videos  # noqa: E402  (needs ROOT on sys.path)


@pytest.fixture(scope="session")
def synthetic_videos(tmp_path_factory):
    """A small synthetic dataset of real H.264 mp4 files, made once per test session.

    4 classes (bars sliding, spinning or pulsing, and triangles sliding);
    3 train, 2 val and 2 test videos per class; 24 frames of 64x64 each. Returns the
    directory that holds train.csv, val.csv, test.csv (VideoMAE clip lists with
    paths relative to it), meta.json (classes and settings) and the videos. Takes
    about a second.
    """
    out = tmp_path_factory.mktemp("synthetic_videos")
    return make_synthetic_videos.main([
        "--out", str(out), "--num_classes", "4", "--videos_per_class", "3", "--val_per_class", "2",
        "--test_per_class", "2", "--frames", "24", "--size", "64", "--seed", "0", "--workers", "1"])
