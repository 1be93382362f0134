"""When the InfluxDB path, reading Kafka itself, counts as close behind the live thread."""

from __future__ import annotations

from ingest.catchup import records_behind


def test_records_behind_sums_the_gaps_of_every_partition():
    assert records_behind({0: 100, 1: 50}, {0: 130, 1: 50}) == 30
    assert records_behind({0: 100}, {0: 90}) == 0  # this path ahead (the live thread waits on Redis)


def test_an_empty_partition_does_not_hold_the_attachment_back():
    # Nothing read of partition 1 by either reader (logical offsets): not behind.
    assert records_behind({0: 100, 1: -2}, {0: 100, 1: -2}) == 0


def test_a_partition_only_the_live_thread_has_read_counts_from_offset_zero():
    assert records_behind({0: -2}, {0: 40}) == 40
    assert records_behind({0: 5}, {}) == 0  # not assigned to the live thread (yet): its own position
