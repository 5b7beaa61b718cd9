"""progress.Progress: the logging schedule (explicit and calibrated), the diagnostics' timing-free
schedule, the moving-average ETAs, and plain lines when output is not a terminal."""
import pytest

import progress
from progress import Progress, round_frequency


@pytest.mark.parametrize("steps, expected", [(0.2, 1), (1.9, 1), (2, 2), (4.99, 2), (7, 5), (10, 10), (37.5, 30),
                                             (1234, 1230)])
def test_round_frequency(steps, expected):
    assert round_frequency(steps) == expected


def logged_steps(schedule, num_steps):
    return [done for done in range(1, num_steps + 1) if schedule.logs_now(done, num_steps)]


def test_explicit_frequency_logs_and_measures_at_its_multiples_and_the_last_step():
    schedule = Progress(4, bar=False)
    assert logged_steps(schedule, 10) == [4, 8, 10]
    assert [d for d in range(1, 11) if schedule.measures_now(d, 10)] == [4, 8, 10]


def test_calibration_turns_the_step_time_into_a_step_count(monkeypatch, capsys):
    clock = iter([100.0, 100.0 + 4 * 0.25])  # step 1 ends at 100 s; steps 2..5 take 0.25 s each
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    schedule = Progress(bar=False)
    schedule.start_epoch(0, 100)
    assert logged_steps(schedule, 100) == [progress.CALIBRATION_STEPS, 100]  # before calibration
    schedule.step_done(1)
    eta, eta_run = schedule.report(5, seconds=30.0, steps_left_in_epoch=95, steps_left_in_run=995)
    assert schedule.every == 40  # 10 s / 0.25 s per step
    # The first step (30 s here, worker start-up) is left out of the rate the ETAs start from.
    assert (eta, eta_run) == ("0:00:24", "0:04:09")
    assert "logging every 40 steps" in capsys.readouterr().out
    assert logged_steps(schedule, 100)[:3] == [40, 80, 100]


def test_diagnostics_do_not_follow_a_calibrated_frequency():
    slow, fast = Progress(bar=False), Progress(bar=False)
    slow.every, fast.every = 1, 50  # what two machines might calibrate to
    for schedule in (slow, fast):
        assert [d for d in range(1, 26) if schedule.measures_now(d, 25)] == [10, 20, 25]


def test_eta_is_a_moving_average():
    schedule = Progress(10, bar=False)
    schedule.start_epoch(0, 100)
    assert schedule.report(10, 10.0, 90, 90) == ("0:01:30", "0:01:30")  # 1 s per step
    # A slow interval (3 s per step) moves the estimate by SMOOTHING of the difference only.
    eta, _ = schedule.report(20, 30.0, 80, 80)
    assert schedule.seconds_per_step == pytest.approx(1 + progress.SMOOTHING * 2)
    assert eta == "0:02:08"


def test_plain_lines_without_a_terminal(capsys):
    schedule = Progress(2)  # capsys' stdout is not a terminal
    schedule.start_epoch(0, 4)
    assert schedule.bar is None
    schedule.write("Epoch [0/1] [2/4]")
    schedule.end_epoch()
    assert capsys.readouterr().out == "Epoch [0/1] [2/4]\n"


def test_a_bar_on_a_terminal(capsys):
    schedule = Progress(2, bar=True)
    schedule.start_epoch(3, 4)
    schedule.step_done(1)
    assert schedule.bar.n == 1 and schedule.bar.total == 4
    schedule.end_epoch()
    assert "epoch 3" in capsys.readouterr().err


def test_a_resumed_run_keeps_its_calibrated_frequency_and_diagnostic_schedule():
    """A frequency from the checkpoint logs at the same steps and, not being --print_freq, leaves the
    diagnostics on their fixed schedule: a resumed run averages and measures as the first part did."""
    resumed = Progress(bar=False, calibrated=2)
    assert [step for step in range(1, 8) if resumed.logs_now(step, 7)] == [2, 4, 6, 7]
    assert [step for step in range(1, 21) if resumed.measures_now(step, 20)] == [10, 20]
    assert Progress(3, bar=False, calibrated=2).every == 3  # --print_freq wins
