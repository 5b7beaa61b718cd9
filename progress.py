"""Which training steps log, and what the log says about time: the epoch's and the run's ETA.

--print_freq N logs every N steps. Without it the frequency is calibrated once per run:
the first epoch logs at step CALIBRATION_STEPS, where the time of the steps after the
first (which also starts the data-loader workers) gives the step count of about
TARGET_SECONDS, rounded to 1, 2, 5 or a multiple of 10. Rank 0's count is broadcast,
because the logged metrics are all-reduced: every rank must log at the same steps.

Work that only feeds the log but must not depend on timing (the pretraining model's
feature diagnostics) follows ``measures_now``: the logging steps of an explicit
--print_freq, else every DIAGNOSTIC_EVERY steps, and always the epoch's last step.

ETAs come from a moving average of the seconds per step (weight SMOOTHING for the newest
logging interval), so one slow interval moves them only partly. On a terminal the main
process also shows a tqdm bar, updated every step; in files and SLURM logs only the
log lines appear.
"""
import datetime
import sys
import time

import dist_utils

TARGET_SECONDS = 10.0
CALIBRATION_STEPS = 5
DIAGNOSTIC_EVERY = 10
SMOOTHING = 0.3
# The checkpoint key of the run's logging frequency.
LOG_EVERY_KEY = "log_every"


def round_frequency(steps):
    """1, 2, 5, or a multiple of 10 steps (at most `steps`, at least 1): log lines at round step numbers,
    and from 10 on every one of them a diagnostic step as well."""
    if steps >= 10:
        return int(steps // 10 * 10)
    return max(n for n in (1, 2, 5) if n <= max(steps, 1))


def format_seconds(seconds):
    return str(datetime.timedelta(seconds=round(max(seconds, 0))))


class Progress:
    """The logging schedule and ETAs of a training run; one object for all its epochs.

    every: --print_freq, or None to calibrate (see the module docstring).
    bar: show a tqdm bar; default: when stdout is a terminal and this is the main process.
    calibrated: the frequency an earlier part of this run calibrated (its checkpoint's LOG_EVERY_KEY): a
    resumed run logs at the same steps, and so reads (and rounds) its averages alike.
    """

    def __init__(self, every=None, bar=None, target_seconds=TARGET_SECONDS, calibrated=None):
        self.every = every if every is not None else calibrated
        self.explicit = every is not None
        self.target_seconds = target_seconds
        self.seconds_per_step = None  # the moving average
        self.show_bar = bar if bar is not None else sys.stdout.isatty() and _is_main()
        self.bar = None
        self._first_step_end = None

    def start_epoch(self, epoch, num_steps, done=0):
        """`done`: the steps an interrupted epoch had trained before it was resumed."""
        self.last_logged = done
        if self.show_bar:
            from tqdm import tqdm  # only on terminals

            self.bar = tqdm(total=num_steps, initial=done, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)

    def step_done(self, done):
        """After step `done` (1-based) of the epoch."""
        if self.every is None and self._first_step_end is None:
            self._first_step_end = (done, time.perf_counter())
        if self.bar is not None:
            self.bar.update(1)

    def logs_now(self, done, num_steps):
        if done == num_steps:
            return True
        if self.every is None:
            return done == CALIBRATION_STEPS
        return done % self.every == 0

    def measures_now(self, done, num_steps):
        """Whether step `done` computes the log-only diagnostics: a schedule that depends on no timing."""
        every = self.every if self.explicit else DIAGNOSTIC_EVERY
        return done % every == 0 or done == num_steps

    def report(self, done, seconds, steps_left_in_epoch, steps_left_in_run):
        """At a logging step: `seconds` since the last one. Returns (epoch ETA, run ETA) as text."""
        steps = done - self.last_logged
        self.last_logged = done
        rate = seconds / steps
        if self.every is None:
            rate = self._calibrate(done, rate)
        self.seconds_per_step = rate if self.seconds_per_step is None else (
            SMOOTHING * rate + (1 - SMOOTHING) * self.seconds_per_step)
        return (format_seconds(self.seconds_per_step * steps_left_in_epoch),
                format_seconds(self.seconds_per_step * steps_left_in_run))

    def _calibrate(self, done, rate):
        first_done, first_end = self._first_step_end
        if done > first_done:  # the steps after the first: no worker start-up in them
            rate = (time.perf_counter() - first_end) / (done - first_done)
        self.every = dist_utils.broadcast_object(round_frequency(self.target_seconds / max(rate, 1e-9)))
        print(f"logging every {self.every} steps (about {self.target_seconds:.0f} s at {rate:.3g} s per step; "
              "--print_freq sets it)", flush=True)
        return rate

    def write(self, line):
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def end_epoch(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _is_main():
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
