"""Redis stays bounded: streams carry a MAXLEN backstop, and nothing is published that no one reads."""

from __future__ import annotations

import time

import pytest
from simulator import produce
from smartgrid_common.contracts import rollup_stream, summary_stream

from ingest_harness import BROKERS
from test_pipeline_e2e import dataset, now_ms, pipeline  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

MAX_ENTRIES = 100
# XADD MAXLEN ~ trims whole stream nodes (stream-node-max-entries, 100 by default): the length
# stays below the cap plus one node.
SLACK = 100


def test_the_summaries_stream_is_capped_when_no_aggregator_reads_it(names, ingest, redis):
    records = dataset(20_000, meters=2_000, start_ms=now_ms() - 60_000, seed=51, malformed_fraction=0.0)
    # Short fetches (not the shipped 200 ms): each trickle arrives on its own, and the next
    # publish carries a summary per partition.
    service = ingest(SMARTGRID_STREAM_MAX_ENTRIES=str(MAX_ENTRIES), SMARTGRID_SUMMARY_INTERVAL="20ms",
                     SMARTGRID_KAFKA_FETCH_WAIT="10ms")
    service.wait_ready()
    # A trickle over the 32 partitions: every publish carries a summary per partition.
    for start in range(0, len(records), 500):
        produce([(r.key, r.value) for r in records[start : start + 500]], BROKERS, names.topic)
        time.sleep(0.05)
    service.wait_committed(len(records))
    published = service.totals()["summaries"]
    assert published > 3 * (MAX_ENTRIES + SLACK), f"only {published} summaries: the cap was never reached"
    assert redis.xlen(summary_stream(names.prefix)) <= MAX_ENTRIES + SLACK


def test_without_a_writer_the_aggregator_emits_no_rollups_and_keeps_no_marks(names, pipeline, redis):
    records = dataset(4_000, meters=400, start_ms=now_ms() - 60_000, seed=52, malformed_fraction=0.0)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    pipeline.start_aggregator(SMARTGRID_EMIT_ROLLUPS="false", SMARTGRID_EMIT_INTERVAL="100ms")
    service = pipeline.start_ingest()
    service.wait_committed(len(records))
    deadline = time.monotonic() + 30
    while int(redis.hget(f"{names.prefix}:agg:stats", "applied") or 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # a few emit intervals
    assert int(redis.hget(f"{names.prefix}:agg:stats", "applied") or 0) > 0
    assert redis.xlen(rollup_stream(names.prefix)) == 0
    assert redis.scard(f"{names.prefix}:agg:dirty") <= 60  # at most what the last interval marked
