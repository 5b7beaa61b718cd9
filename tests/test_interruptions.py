"""Runs cut short: a kill between an epoch's checkpoint and its log line, a torn log line, temporaries of
interrupted saves, SIGTERM during a save; each checkpoint written once; the fault-injection script
(signals mid-epoch and a full disk: test_preemption.py)."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

import utils
from bench import fault_injection
from checkpoint import link_atomic, load_checkpoint, save_checkpoint_atomic
from test_finetuning import NO_AUGMENTATION, finetune
from test_pretraining import REPO, TIMING_FIELDS, epoch_log, pretrain


def without_timings(record):
    return {key: value for key, value in record.items() if key not in TIMING_FIELDS}


def kill_before_logging(monkeypatch, epoch):
    """Makes the run stop, as a killed job would, after epoch `epoch`'s checkpoint and before its log line.
    Returns the list the lost line is put in."""
    log_epoch, lost = utils.log_epoch, []

    def log_unless_killed(record, args, env):
        if record.get("epoch") == epoch:
            lost.append(json.loads(json.dumps(record)))
            raise KeyboardInterrupt
        log_epoch(record, args, env)

    monkeypatch.setattr(utils, "log_epoch", log_unless_killed)
    return lost


def test_pretraining_killed_between_checkpoint_and_log_line_loses_no_record(synthetic_videos, tmp_path,
                                                                            monkeypatch):
    flags = ["--epochs", "2", "--mask_type", "random"]
    full = pretrain(synthetic_videos, tmp_path / "full", *flags)
    lost = kill_before_logging(monkeypatch, epoch=0)
    with pytest.raises(KeyboardInterrupt):
        pretrain(synthetic_videos, tmp_path / "split", *flags)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "split" / "checkpoint-latest.pth")["epoch"] == 0
    assert not (tmp_path / "split" / "log.txt").exists()

    pretrain(synthetic_videos, tmp_path / "split", *flags)
    records = epoch_log(tmp_path / "split")
    assert [record["epoch"] for record in records] == [0, 1]
    assert records[0] == lost[0]  # the line the kill cut off, from the checkpoint
    assert [without_timings(r) for r in records] == [without_timings(r) for r in epoch_log(full)]


def test_a_torn_last_line_is_dropped_and_its_epoch_restored(synthetic_videos, tmp_path):
    out = pretrain(synthetic_videos, tmp_path / "run", "--epochs", "1")
    (record,) = epoch_log(out)
    (out / "log.txt").write_text((out / "log.txt").read_text()[:20])  # a kill during the append of its line
    pretrain(synthetic_videos, out, "--epochs", "2")
    records = epoch_log(out)
    assert [r["epoch"] for r in records] == [0, 1] and records[0] == record


def test_finetuning_killed_between_checkpoint_and_log_line_loses_no_record(synthetic_videos, tmp_path,
                                                                           monkeypatch):
    out = tmp_path / "ft"
    flags = ["--epochs", "2", "--disable_eval_during_finetuning", *NO_AUGMENTATION]
    lost = kill_before_logging(monkeypatch, epoch=1)
    with pytest.raises(KeyboardInterrupt):
        finetune(synthetic_videos, out, *flags)
    monkeypatch.undo()
    assert [r["epoch"] for r in epoch_log(out)] == [0]
    stale = [".checkpoint-latest.pth.u7x2.tmp", ".test_predictions.pt.k9c1.tmp"]  # as earlier kills leave them
    for name in stale:
        (out / name).write_bytes(b"\x00" * 100)

    finetune(synthetic_videos, out, *flags)
    records = epoch_log(out)
    assert [r.get("epoch") for r in records] == [0, 1, None]  # None: the test scores
    assert records[1] == lost[0]
    assert not any((out / name).exists() for name in stale)


def test_a_numbered_checkpoint_is_written_once(synthetic_videos, tmp_path, monkeypatch):
    saves, save = [], torch.save

    def counted_save(obj, f, *args, **kwargs):
        saves.append(obj.get("epoch"))
        save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", counted_save)
    out = pretrain(synthetic_videos, tmp_path / "run", "--epochs", "3", "--save_ckpt_freq", "2")
    assert saves == [0, 1, 2]  # epoch 1 and 2 are numbered, each written once
    # checkpoint-latest.pth is the same file as the newest numbered one, not a second copy.
    assert os.path.samefile(out / "checkpoint-2.pth", out / "checkpoint-latest.pth")
    assert load_checkpoint(out / "checkpoint-1.pth")["epoch"] == 1
    assert load_checkpoint(out / "checkpoint-latest.pth")["epoch"] == 2


def test_where_there_are_no_hard_links_the_second_name_is_a_copy(tmp_path, monkeypatch):
    def no_links(source, destination):
        raise OSError(1, "Operation not permitted")

    save_checkpoint_atomic({"epoch": 4, "model": {"w": torch.arange(5)}}, tmp_path / "checkpoint-4.pth")
    monkeypatch.setattr(os, "link", no_links)
    link_atomic(tmp_path / "checkpoint-4.pth", tmp_path / "checkpoint-latest.pth")
    assert not os.path.samefile(tmp_path / "checkpoint-4.pth", tmp_path / "checkpoint-latest.pth")
    assert (tmp_path / "checkpoint-latest.pth").read_bytes() == (tmp_path / "checkpoint-4.pth").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-4.pth", "checkpoint-latest.pth"]  # no temporary left


def test_stale_temporaries_of_this_output_dir_are_removed_at_start_and_nothing_else(synthetic_videos, tmp_path):
    out = tmp_path / "run"
    stale = [".checkpoint-latest.pth.k2j3x9.tmp", ".checkpoint-7.pth.a8b7c6.tmp", ".checkpoint-best.pth.q1.tmp",
             ".log.txt.z9y8.tmp"]
    kept = [".other.pth.k2j3x9.tmp", "notes.tmp", "checkpoint-7.pth.tmp", "sub/.checkpoint-latest.pth.k2j3x9.tmp"]
    for name in stale + kept:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"\x00" * 4096)
    pretrain(synthetic_videos, out, "--epochs", "1")
    assert not any((out / name).exists() for name in stale)
    assert all((out / name).exists() for name in kept)


SLOW_SAVE = """
import sys, time
sys.path.insert(0, {repo!r})
from checkpoint import save_checkpoint_atomic

class Slow:
    def __reduce__(self):
        print("writing", flush=True)
        time.sleep(120)
        return int, ()

save_checkpoint_atomic({{"weights": [0.0] * 1000, "slow": Slow()}}, sys.argv[1])
"""


def test_sigterm_during_a_save_leaves_no_temporary(tmp_path):
    """torchrun and schedulers stop a job with SIGTERM, which ends Python without running its cleanups."""
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "slow_save.py"
    script.write_text(SLOW_SAVE.format(repo=REPO))
    process = subprocess.Popen([sys.executable, str(script), str(out / "checkpoint-latest.pth")],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    assert len(os.listdir(out)) == 1  # the temporary being written
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert os.listdir(out) == []


@pytest.mark.parametrize("entry_point", [
    "pretraining",
    pytest.param("fine-tuning", marks=pytest.mark.skipif(
        not os.environ.get("FAULT_INJECTION"), reason="40 s more; FAULT_INJECTION=1 runs it")),
])
def test_fault_injection_of_one_kill_loses_nothing(tmp_path, synthetic_videos, entry_point):
    """The test-sized run of bench/fault_injection.py, which kills each entry point 20 times."""
    report = fault_injection.run(synthetic_videos, tmp_path, trials=1, seed=3, entry_points=[entry_point])
    for script in report:
        assert report[script]["trials"] == 1 and report[script]["resumed"] == 1
        assert (report[script]["lost_records"], report[script]["repeated_records"], report[script]["torn_files"],
                report[script]["stale_temporaries"], report[script]["differing_records"]) == (0, 0, 0, 0, 0)
        # A full disk ends in one line; a signal stops the run as preempted (unless it came in the last step).
        assert report[script]["one_line_errors"] == report[script]["enospc_trials"]
        assert report[script]["preempted"] <= report[script]["signal_trials"]
