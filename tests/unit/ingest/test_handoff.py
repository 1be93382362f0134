"""The hand-off between the live thread and the InfluxDB path: bounded in records, in order,
and a DETACHED marker when lines no longer fit (the InfluxDB path then reads Kafka itself)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ingest.handoff import DETACHED, HandOff


@dataclass
class FakeLines:
    """What the hand-off reads of ingest._hotpath.Lines: its ranges (partition, first, last, records)."""

    ranges: list[tuple[int, int, int, int]] = field(default_factory=list)


def lines(partition: int, first: int, last: int) -> FakeLines:
    return FakeLines([(partition, first, last, last - first + 1)])


def test_lines_are_taken_in_order_and_counted_until_settled():
    handoff = HandOff(limit=100)
    first, second = lines(0, 0, 9), lines(0, 10, 29)
    assert handoff.offer(first) and handoff.offer(second)
    assert handoff.records == 30
    assert handoff.take(0) is first and handoff.take(0) is second
    assert handoff.take(0) is None
    assert handoff.records == 30  # taken is not committed: still in flight
    handoff.settle(30)
    assert handoff.records == 0


def test_lines_that_do_not_fit_are_refused_whole_and_nothing_is_queued():
    handoff = HandOff(limit=50)
    assert handoff.offer(lines(0, 0, 39))
    assert not handoff.offer(lines(0, 40, 59))  # 40 + 20 > 50
    assert handoff.records == 40
    handoff.detach()
    assert handoff.take(0).ranges[0][:3] == (0, 0, 39)
    assert handoff.take(0) is DETACHED


def test_records_the_influxdb_path_reads_itself_count_against_the_limit():
    handoff = HandOff(limit=50)
    handoff.read_own(45)
    assert not handoff.offer(lines(1, 0, 9))
    handoff.settle(45)
    assert handoff.offer(lines(1, 0, 9))


def test_take_waits_for_an_offer_from_another_thread():
    handoff = HandOff(limit=100)
    offered = lines(3, 5, 6)
    timer = threading.Timer(0.05, handoff.offer, args=(offered,))
    timer.start()
    try:
        assert handoff.take(5.0) is offered
    finally:
        timer.join()
