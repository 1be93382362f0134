"""The live path's native consumer (`ingest._hotpath.Reader`) against the real Kafka: it
folds into a `Processor` exactly what `Processor.process` folds from the same records, reads from
the positions it is given, stops reading what it is told to, and says what is wrong with a bad
configuration."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from confluent_kafka import Producer
from ingest._hotpath import Reader, Processor
from simulator import generate_labelled, produce

from ingest_harness import BROKERS, Names, end_offsets, read_topic

pytestmark = pytest.mark.integration

PARTITIONS = 4
START_MS = int(time.time() * 1000) - 600_000


def consumer_for(topic: str) -> tuple[Reader, Processor]:
    config = {
        "bootstrap.servers": BROKERS,
        "group.id": f"test-live-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": "false",
        "enable.partition.eof": "false",
        "fetch.wait.max.ms": "50",
    }
    return Reader(config, topic), Processor(topic, "ms", True, 60_000, lines=False)


def poll_until(consumer: Reader, processor: Processor, count: int,
               timeout: float = 60) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """Poll until ``count`` records were read; (records, invalid, partition -> (first, last))."""
    records = invalid = 0
    seen: dict[int, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout
    while records < count and time.monotonic() < deadline:
        polled = consumer.poll(processor, 1000, 0.5)
        records += polled.records
        invalid += polled.invalid
        for partition, first, last in polled.ranges:
            low, high = seen.get(partition, (first, last))
            seen[partition] = (min(low, first), max(high, last))
    return records, invalid, seen


@pytest.fixture
def topic():
    names = Names(partitions=PARTITIONS)
    records = generate_labelled(4000, meters=300, seed=13, start_ms=START_MS, step_ms=50, malformed_fraction=0.05,
                                faulty_fraction=0.05)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    yield names.topic, records
    names.cleanup()


def test_the_native_consumer_folds_what_the_hot_path_folds(topic):
    name, records = topic
    consumer, processor = consumer_for(name)
    try:
        consumer.assign([(p, -2) for p in range(PARTITIONS)])  # -2: the beginning
        read, invalid, ranges = poll_until(consumer, processor, len(records))
        native = dict(processor.take_summaries())
        ends = end_offsets(name, PARTITIONS)
        highs = {p: consumer.high_watermark(p) for p in range(PARTITIONS)}
    finally:
        consumer.close()

    # The same records, read by confluent-kafka and folded by the hot path, partition by partition.
    messages = sorted(read_topic(name, len(records)), key=lambda m: (m.partition(), m.offset()))
    reference = Processor(name, "ms", True, 60_000, lines=False)
    batch = reference.process([m.value() for m in messages], [m.partition() for m in messages],
                              [m.offset() for m in messages])
    expected = dict(reference.take_summaries())

    assert read == len(records)
    assert invalid == sum(1 for r in records if r.label != "valid") == len(records) - batch.valid
    assert ranges == {p: (0, ends[p] - 1) for p in range(PARTITIONS) if ends[p] > 0}
    assert highs == ends
    assert native.keys() == expected.keys() and len(native) > 1
    assert native == expected  # byte for byte: same sums, counts, meters, status changes, offsets


def test_positions_unassign_and_resume(topic):
    name, records = topic
    ends = end_offsets(name, PARTITIONS)
    start = {p: ends[p] // 2 for p in range(PARTITIONS)}
    consumer, processor = consumer_for(name)
    try:
        consumer.assign([(p, start[p]) for p in range(PARTITIONS)])
        expected = sum(ends[p] - start[p] for p in range(PARTITIONS))
        read, _invalid, ranges = poll_until(consumer, processor, expected)
        assert read == expected
        assert ranges == {p: (start[p], ends[p] - 1) for p in range(PARTITIONS) if ends[p] > start[p]}

        # A partition taken away is no longer read; the others are re-read from where they are assigned.
        consumer.unassign([0])
        consumer.unassign([1, 2, 3])
        consumer.assign([(1, 0)])
        read, _invalid, ranges = poll_until(consumer, processor, ends[1], timeout=30)
        assert read == ends[1]
        assert set(ranges) == {1}
        assert consumer.poll(processor, 1000, 1.0).records == 0

        # Resumed after a summary up to offset 9: offsets up to 9 only rebuild meter state and the
        # next summary starts at 10.
        consumer.unassign([1])
        processor.resume(1, 9, None)
        processor.take_summaries()
        consumer.assign([(1, 0)])
        poll_until(consumer, processor, ends[1], timeout=30)
        (partition, summary), = processor.take_summaries()
        assert partition == 1
        assert b'"first_offset":10' in summary and f'"last_offset":{ends[1] - 1}'.encode() in summary
        assert processor.snapshot(1) is not None and processor.snapshot(0) is not None
    finally:
        consumer.close()
    with pytest.raises(RuntimeError, match="closed"):
        consumer.poll(processor, 10, 0.1)


def three_seconds(topic: str, second: int) -> None:
    """Offsets 0-9 in ``second``, 10-19 in the next, 20-29 in the one after, on partition 0."""
    producer = Producer({"bootstrap.servers": BROKERS})
    for offset in range(30):
        reading = {"meter_id": f"m-{offset}", "timestamp": (second + offset // 10) * 1000 + offset,
                   "consumption_kwh": 1.0, "region": "north", "status": "ok"}
        producer.produce(topic, json.dumps(reading).encode(), partition=0)
    assert producer.flush(30) == 0


def test_a_read_returns_right_after_an_event_second_closes():
    names = Names(partitions=1)
    second = START_MS // 1000
    three_seconds(names.topic, second)
    consumer, processor = consumer_for(names.topic)
    try:
        consumer.assign([(0, -2)])
        first = consumer.poll(processor, 1, 10.0)
        assert first.newest_second == second
        polled = consumer.poll(processor, 1000, 10.0, second)
        assert polled.newest_second == second + 1
        assert polled.ranges == [(0, 1, 10)]  # stopped at the later second's first reading
        rest = consumer.poll(processor, 1000, 3.0)  # without newer_than: reads to the end
        assert rest.ranges == [(0, 11, 29)] and rest.newest_second == second + 2

        # Records taken from librdkafka past an early return are not read after a new position:
        # assigned again from 5, the partition is read from 5; unassigned, it is not read.
        consumer.unassign([0])
        consumer.assign([(0, -2)])
        assert consumer.poll(processor, 1000, 10.0, second).ranges == [(0, 0, 10)]
        consumer.unassign([0])
        consumer.assign([(0, 5)])
        assert consumer.poll(processor, 1000, 3.0).ranges == [(0, 5, 29)]
        consumer.unassign([0])
        consumer.assign([(0, -2)])
        assert consumer.poll(processor, 1000, 10.0, second).ranges == [(0, 0, 10)]
        consumer.unassign([0])
        assert consumer.poll(processor, 1000, 1.0).records == 0
    finally:
        consumer.close()
        names.cleanup()


def test_a_bad_configuration_says_what_is_wrong():
    with pytest.raises(ValueError, match="fetch.wait.max.ms"):
        Reader({"bootstrap.servers": BROKERS, "fetch.wait.max.ms": "not a number"}, "t")
    with pytest.raises(ValueError, match="no.such.setting"):
        Reader({"bootstrap.servers": BROKERS, "no.such.setting": "1"}, "t")


def test_handed_off_records_become_lines_once_from_the_hand_off_offset(topic):
    name, records = topic
    ends = end_offsets(name, PARTITIONS)
    start = {p: ends[p] // 3 for p in range(PARTITIONS)}
    consumer, processor = consumer_for(name)
    try:
        for p in range(PARTITIONS):
            consumer.hand_off(p, start[p])
        consumer.assign([(p, -2) for p in range(PARTITIONS)])
        seen: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        lines, invalid, read = [], [], 0
        while read < len(records):
            polled = consumer.poll(processor, 500, 1.0)
            read += polled.records
            if polled.lines is None:
                continue
            lines += polled.lines.body.splitlines()
            invalid += polled.lines.invalid
            for partition, first, last, count in polled.lines.ranges:
                seen[partition].append((first, last, count))
            positions = polled.lines.positions
            assert len(positions) == 12 * polled.lines.valid
        # Each partition handed off from its hand-off offset to its end, in order, without a gap.
        for p in range(PARTITIONS):
            assert seen[p][0][0] == start[p] and seen[p][-1][1] == ends[p] - 1
            assert sum(count for _, _, count in seen[p]) == ends[p] - start[p]
        handed = sum(ends[p] - start[p] for p in range(PARTITIONS))
        assert len(lines) + len(invalid) == handed
        # Invalid records come with their original bytes and a reason.
        by_value = {r.value for r in records if r.label != "valid"}
        assert invalid and all(i.value in by_value and i.reason for i in invalid)
        assert all(i.offset >= start[i.partition] for i in invalid)

        # Read again from the beginning (a fence's re-resume): folded, never handed off twice.
        consumer.unassign([0])
        consumer.assign([(0, -2)])
        again = 0
        while again < ends[0]:
            polled = consumer.poll(processor, 500, 1.0)
            again += polled.records
            assert polled.lines is None
    finally:
        consumer.close()


def test_a_bounded_partition_stops_at_its_bound(topic):
    name, _records = topic
    ends = end_offsets(name, PARTITIONS)
    consumer = Reader({"bootstrap.servers": BROKERS, "group.id": f"test-bound-{uuid.uuid4().hex[:8]}",
                       "enable.auto.commit": "false", "enable.partition.eof": "false"}, name)
    processor = Processor(name, "ms", False, 60_000, lines=True)
    bound = {p: ends[p] // 2 for p in range(PARTITIONS)}
    try:
        for p in range(PARTITIONS):
            consumer.hand_off(p, -1)
            consumer.bound(p, bound[p])
        consumer.assign([(p, -2) for p in range(PARTITIONS)])
        reached, last = set(), {}
        deadline = time.monotonic() + 60
        while len(reached) < PARTITIONS and time.monotonic() < deadline:
            polled = consumer.poll(processor, 500, 0.5)
            reached.update(polled.reached)
            for partition, _first, high, _count in (polled.lines.ranges if polled.lines else []):
                last[partition] = high
        assert reached == set(range(PARTITIONS))
        assert last == {p: bound[p] - 1 for p in range(PARTITIONS)}
        assert consumer.poll(processor, 500, 1.0).records == 0  # paused at the bound
    finally:
        consumer.close()


def test_an_invalid_record_is_handed_off_with_its_key_and_headers_as_sent():
    names = Names(partitions=1)
    try:
        producer = Producer({"bootstrap.servers": BROKERS})
        headers = [("trace", b"\x00\xffid"), ("empty", None), ("trace", b"second")]
        producer.produce(names.topic, key=b"MTR-1", value=b"{not json", headers=headers)
        producer.produce(names.topic, key=None, value=None)
        producer.flush(10)
        consumer, processor = consumer_for(names.topic)
        try:
            consumer.hand_off(0, -1)
            consumer.assign([(0, -2)])
            invalid = []
            deadline = time.monotonic() + 30
            while len(invalid) < 2 and time.monotonic() < deadline:
                polled = consumer.poll(processor, 100, 0.5)
                invalid += polled.lines.invalid if polled.lines is not None else []
        finally:
            consumer.close()
        assert [(i.offset, i.key, i.value, i.headers) for i in invalid] == [
            (0, b"MTR-1", b"{not json", headers),
            (1, None, None, []),
        ]
        assert all(i.reason for i in invalid)
    finally:
        names.cleanup()


def test_librdkafka_s_errors_come_back_from_the_poll_and_are_not_printed(capfd):
    """librdkafka's log lines are queued (``log.queue``) and returned by ``poll``: a broker that
    cannot be reached is a warning in the service's log, not a line of its own on stderr."""
    consumer = Reader({"bootstrap.servers": "127.0.0.1:1", "group.id": f"test-errors-{uuid.uuid4().hex[:8]}"}, "t")
    processor = Processor("t", "ms", True, 60_000, lines=False)
    errors = []
    try:
        consumer.assign([(0, -2)])
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            errors += consumer.poll(processor, 100, 0.5).errors
    finally:
        consumer.close()
    assert any("127.0.0.1:1" in error and "refused" in error.lower() for error in errors), errors
    printed = capfd.readouterr()
    assert "|FAIL|" not in printed.err and "|ERROR|" not in printed.err, printed.err


def test_a_reader_dropped_without_close_while_it_keeps_records_ends_cleanly():
    """The records a reader keeps past an early return, and its queues, are released before its
    client, also when the reader is only garbage-collected (a separate process: a use after
    free would kill it)."""
    names = Names(partitions=1)
    second = START_MS // 1000
    three_seconds(names.topic, second)
    script = textwrap.dedent(f"""
        import gc
        from ingest._hotpath import Processor, Reader
        reader = Reader({{"bootstrap.servers": "{BROKERS}", "group.id": "test-drop"}}, "{names.topic}")
        processor = Processor("{names.topic}", "ms", True, 60_000, lines=False)
        reader.assign([(0, -2)])
        assert reader.poll(processor, 1000, 10.0, {second}).ranges == [(0, 0, 10)]  # 11-29 kept
        del reader
        gc.collect()
        print("dropped")
    """)
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        names.cleanup()
    assert done.returncode == 0 and done.stdout.strip() == "dropped", (done.returncode, done.stdout, done.stderr)
