"""Rate pacing arithmetic."""

from __future__ import annotations

import pytest
from simulator import pacing


def test_flat_out_never_waits_and_uses_full_batches():
    assert pacing.delay(0, 1_000_000, 0.001) == 0.0
    assert pacing.batch_size(0, 10_000) == 10_000


def test_paced_batches_hold_about_20ms_of_records():
    assert pacing.batch_size(100_000, 10_000) == 2000
    assert pacing.batch_size(10, 10_000) == 1
    assert pacing.batch_size(10_000_000, 10_000) == 10_000


def test_ahead_of_schedule_waits_for_the_difference():
    assert pacing.delay(1000, 500, 0.2) == pytest.approx(0.3)


def test_behind_schedule_does_not_wait_so_it_catches_up():
    assert pacing.delay(1000, 500, 0.9) == 0.0


def test_pacing_a_simulated_run_keeps_the_long_run_rate():
    rate, batch, clock, sent = 5000.0, pacing.batch_size(5000, 10_000), 0.0, 0
    while sent < 50_000:
        sent += batch
        clock += 0.001  # the work of one batch
        clock += pacing.delay(rate, sent, clock)
    assert pacing.achieved_rate(sent, clock) == pytest.approx(rate, rel=0.01)
