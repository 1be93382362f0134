"""The one retry rule: first delay, doubling, capped, back to the first after a success."""

from __future__ import annotations

import threading

import pytest
from smartgrid_common.backoff import (
    INFLUX_MAX_DELAY,
    REDIS_FIRST_DELAY,
    REDIS_MAX_DELAY,
    Backoff,
    influx_backoff,
    redis_backoff,
)
from smartgrid_common.influx import InfluxClient, InfluxUnavailable
from smartgrid_common.settings import InfluxSettings


def test_delays_double_from_the_first_up_to_the_cap_and_stay_there():
    backoff = Backoff(first=1.0, maximum=30.0)
    assert [backoff.next() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.attempts == 8


def test_a_success_makes_the_next_failure_wait_the_first_delay_again():
    backoff = Backoff(first=0.2, maximum=10.0)
    assert [backoff.next() for _ in range(3)] == pytest.approx([0.2, 0.4, 0.8])
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next() == 0.2


def test_other_factors_are_followed():
    backoff = Backoff(first=0.5, maximum=10.0, factor=3.0)
    assert [backoff.next() for _ in range(4)] == [0.5, 1.5, 4.5, 10.0]


def test_retries_that_never_stop_keep_the_cap_without_overflowing():
    backoff = Backoff(first=1.0, maximum=30.0)
    for _ in range(5000):
        delay = backoff.next()
    assert delay == 30.0
    assert backoff.attempts == 5000


@pytest.mark.parametrize(
    ("first", "maximum", "factor"),
    [(0.0, 10.0, 2.0), (-1.0, 10.0, 2.0), (5.0, 1.0, 2.0), (1.0, 10.0, 0.5)],
)
def test_policies_that_would_busy_loop_or_shrink_are_refused(first, maximum, factor):
    with pytest.raises(ValueError):
        Backoff(first, maximum, factor)


def test_influxdb_retries_start_at_the_retry_interval_and_double_up_to_30_seconds():
    backoff = influx_backoff(InfluxSettings(INFLUXDB_RETRY_INTERVAL="1s"))
    assert [backoff.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert INFLUX_MAX_DELAY == 30.0


def test_a_zero_retry_interval_retries_after_100ms_not_in_a_busy_loop():
    backoff = influx_backoff(InfluxSettings(INFLUXDB_RETRY_INTERVAL="0s"))
    assert backoff.next() == 0.1


def test_a_retry_interval_above_30_seconds_is_kept():
    backoff = influx_backoff(InfluxSettings(INFLUXDB_RETRY_INTERVAL="45s"))
    assert [backoff.next() for _ in range(3)] == [45, 45, 45]


def test_redis_retries_start_at_200ms_and_double_up_to_10_seconds():
    backoff = redis_backoff()
    delays = [backoff.next() for _ in range(8)]
    assert delays[0] == REDIS_FIRST_DELAY == 0.2
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0])
    assert REDIS_MAX_DELAY == 10.0


class _Unavailable(InfluxClient):
    """An InfluxClient whose writes fail ``failures`` times, then succeed (no server involved:
    the retry loop is what is under test, the real InfluxDB is in the integration tests)."""

    def __init__(self, settings: InfluxSettings, failures: int) -> None:
        super().__init__(settings)
        self.failures = failures

    def write(self, body, retention_policy, precision="ms"):
        if self.failures:
            self.failures -= 1
            raise InfluxUnavailable("down")
        return []


class _RecordingStop(threading.Event):
    """A stop event that records the waits instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None) -> bool:
        self.waits.append(timeout)
        return False


def test_influxdb_writes_wait_the_shared_delays_and_report_each_attempt():
    client = _Unavailable(InfluxSettings(INFLUXDB_RETRY_INTERVAL="1s"), failures=7)
    stop, attempts = _RecordingStop(), []
    try:
        rejected = client.write_until_done(b"m v=1 1\n", "raw_data", stop, on_retry=lambda n, _: attempts.append(n))
    finally:
        client.close()
    assert rejected == []
    assert stop.waits == [1, 2, 4, 8, 16, 30, 30]
    assert attempts == [1, 2, 3, 4, 5, 6, 7]
