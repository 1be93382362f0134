"""Each record is read from Kafka once: the live thread's reader folds it and hands its line to
the InfluxDB path. The InfluxDB path reads Kafka itself only when it is behind: after InfluxDB
fell behind by more than PROCESSOR_QUEUE_SIZE (the live thread detaches, never waits), and for a
gap at start (a meter-state checkpoint ahead of the InfluxDB commit). Exact in every case."""

from __future__ import annotations

import threading
import time

import pytest
from simulator import produce

from ingest_harness import BROKERS, stack_command, wait_until
from test_pipeline_e2e import (  # noqa: F401 - fixtures
    all_committed, dataset, invalid_of, live_readings, now_ms, pipeline, produce_to, reading, truth_from_topic,
)

pytestmark = pytest.mark.integration


def log_lines(service, text: str) -> int:
    return sum(1 for line in service.log.read_text().splitlines() if text in line)


def test_at_a_steady_load_every_record_is_read_once(names, pipeline, redis):
    records = dataset(30_000, meters=2_000, start_ms=now_ms() - 600_000, seed=41)
    pipeline.start_aggregator()
    service = pipeline.start_ingest()
    service.wait_ready()
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    truth = truth_from_topic(names.topic, len(records), invalid_of(records))
    wait_until(lambda: all_committed(names), 120, "ingest to commit every record")
    pipeline.start_writer()
    pipeline.wait_exact(truth, timeout=120)
    totals = service.totals()
    # Every record was taken by the InfluxDB path from the live thread's reads: none twice.
    assert totals["consumed"] == totals["committed"] == len(records)
    assert totals["read_again"] == 0
    assert totals["detached"] == 0


def test_influxdb_behind_by_more_than_the_hand_off_detaches_reads_kafka_and_attaches_again(names, pipeline, redis):
    records = dataset(40_000, meters=2_000, start_ms=now_ms() - 1_200_000, seed=42)
    valid = sum(1 for r in records if r.label == "valid")
    pipeline.start_aggregator()
    # A hand-off of 2,000 records: InfluxDB down for a few seconds is far more than that. Reads of
    # at most 1,000 records: the InfluxDB path's own reads pause tens of times behind it.
    service = pipeline.start_ingest(PROCESSOR_QUEUE_SIZE="2000", INFLUXDB_BATCH_SIZE="500", KAFKA_BATCH_SIZE="1000")
    service.wait_ready()
    chunks = [records[i : i + 2_000] for i in range(0, len(records), 2_000)]
    errors: list[BaseException] = []

    def producer() -> None:  # ~8k readings/s for 5 s
        try:
            for chunk in chunks:
                produce([(r.key, r.value) for r in chunk], BROKERS, names.topic)
                time.sleep(0.25)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    stack_command("stop-server", "influxdb")
    try:
        thread = threading.Thread(target=producer, daemon=True)
        thread.start()
        thread.join(120)
        # The live thread never waits for the InfluxDB path: every valid reading reaches the live
        # view while at most the hand-off's worth is in flight towards InfluxDB.
        wait_until(lambda: live_readings(redis, names.prefix) >= valid, 60, "every reading in the live view")
        assert live_readings(redis, names.prefix) == valid
        assert service.totals()["detached"] >= 1
        assert service.totals()["committed"] == 0
    finally:
        stack_command("start-server", "influxdb")
    assert not errors, errors
    truth = truth_from_topic(names.topic, len(records), invalid_of(records))
    wait_until(lambda: all_committed(names), 180, "ingest to commit every record")
    pipeline.start_writer()
    pipeline.wait_exact(truth, timeout=180)
    totals = service.totals()
    assert totals["committed"] == len(records)
    # What the live thread had read ahead while detached was read again, and only that.
    assert 0 < totals["read_again"] < len(records)
    # Read again at InfluxDB's pace, through a 2,000-record hand-off: many pauses, and a warning
    # for the first of them only (the others are counted in the 30 s statistics line).
    warned = log_lines(service, "backpressure: reading paused")
    assert totals["backpressure_pauses"] >= 10
    assert 1 <= warned < totals["backpressure_pauses"] // 2, (warned, totals["backpressure_pauses"])
    # Caught up, it takes lines from the live thread again: new records are read once.
    wait_until(lambda: log_lines(service, "reading lines from the live path again") >= 1, 60, "the InfluxDB path to attach again")
    before = service.totals()
    more = dataset(5_000, meters=500, start_ms=now_ms() - 60_000, seed=43)
    for i in range(0, len(more), 250):  # ~1,250 readings/s: well within what the hand-off holds
        produce([(r.key, r.value) for r in more[i : i + 250]], BROKERS, names.topic)
        time.sleep(0.2)
    wait_until(lambda: service.totals()["committed"] >= len(records) + len(more), 60, "the new records committed")
    after = service.totals()
    assert (after["read_again"], after["detached"]) == (before["read_again"], before["detached"])


def test_a_checkpoint_ahead_of_the_commit_leaves_a_gap_read_at_start(names, pipeline, redis):
    records = dataset(20_000, meters=1_000, start_ms=now_ms() - 600_000, seed=44)
    pipeline.start_aggregator()
    first = pipeline.start_ingest(SMARTGRID_CHECKPOINT_INTERVAL="1s")
    first.wait_ready()
    stack_command("stop-server", "influxdb")
    try:
        # InfluxDB is down: the live path publishes and checkpoints every record, nothing is committed.
        produce([(r.key, r.value) for r in records], BROKERS, names.topic)
        valid = sum(1 for r in records if r.label == "valid")
        wait_until(lambda: live_readings(redis, names.prefix) >= valid, 60, "every reading in the live view")
        time.sleep(2.5)  # a checkpoint after the last publish
        assert first.totals()["committed"] == 0
        first.kill9()
    finally:
        stack_command("start-server", "influxdb")
    second = pipeline.start_ingest()
    second.wait_ready()
    truth = truth_from_topic(names.topic, len(records), invalid_of(records))
    wait_until(lambda: all_committed(names), 120, "ingest to commit every record")
    pipeline.start_writer()
    pipeline.wait_exact(truth, timeout=120)
    totals = second.totals()
    # The live path resumed from its checkpoints (at the end); the InfluxDB path read the gap
    # from its commit (the beginning) up to there itself, bounded, then took lines again.
    assert totals["read_again"] == totals["committed"] == len(records)
    assert log_lines(second, "reading lines from the live path again") >= 1


def test_partitions_that_never_had_a_record_do_not_keep_the_influxdb_path_detached(names, pipeline, redis):
    # Records on 4 of the 32 partitions only: the other 28 have no offset either reader has read.
    base = now_ms() - 300_000
    per_partition = [
        [(f"m{p}-{i % 50}".encode(), reading(f"m{p}-{i % 50}", base + i * 10, 1.0)) for i in range(2_500)]
        for p in range(4)
    ]
    pipeline.start_aggregator()
    service = pipeline.start_ingest(PROCESSOR_QUEUE_SIZE="2000", INFLUXDB_BATCH_SIZE="500")
    service.wait_ready()
    stack_command("stop-server", "influxdb")
    try:
        for partition, records in enumerate(per_partition):
            produce_to(names.topic, partition, records)
        wait_until(lambda: service.totals()["detached"] >= 1, 60, "the live path to detach")
    finally:
        stack_command("start-server", "influxdb")
    wait_until(lambda: all_committed(names), 120, "ingest to commit every record")
    wait_until(lambda: log_lines(service, "reading lines from the live path again") >= 1, 60, "the InfluxDB path to attach again")
    # The worker's counters reach /stats in a snapshot a second: one that counts every record
    # committed counts every read behind them too.
    total = sum(len(records) for records in per_partition)
    wait_until(lambda: service.totals()["committed"] == total, 30, "the stats to count every commit")
    before = service.totals()
    produce_to(names.topic, 0, [(b"late-0", reading("late-0", now_ms(), 2.0))])
    wait_until(lambda: service.totals()["committed"] >= before["committed"] + 1, 60, "the new record committed")
    assert service.totals()["read_again"] == before["read_again"]
