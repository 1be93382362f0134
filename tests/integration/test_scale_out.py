"""Scale out on one box: two ingest replicas (static partition ranges), two aggregator replicas and
the writer, fed as fast as this box takes it, exact against the ground truth."""

from __future__ import annotations

import time

import httpx
import pytest
from aggregator.testing import free_port
from simulator import produce

from ingest_harness import BROKERS
from test_pipeline_e2e import all_committed, dataset, invalid_of, now_ms, pipeline, truth_from_topic, wait_until  # noqa: F401

pytestmark = pytest.mark.integration

RECORDS = 150_000


def applied_by(port: int) -> float:
    """Summaries one aggregator replica applied (its /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('aggregator_summaries_total{outcome="applied"}'))


def test_two_ingest_replicas_two_aggregators_and_the_writer_flat_out_are_exact(names, pipeline, redis):
    records = dataset(RECORDS, meters=10_000, start_ms=now_ms() - 1_200_000, seed=61)
    second_api = free_port()
    pipeline.start_aggregator(SMARTGRID_AGGREGATOR_CONSUMER="agg-0")
    pipeline.start_aggregator(SMARTGRID_AGGREGATOR_CONSUMER="agg-1", SMARTGRID_HTTP_PORT=str(second_api))
    pipeline.start_writer()
    replicas = [
        pipeline.start_ingest(KAFKA_CONSUMER_COUNT="2", SMARTGRID_REPLICA_INDEX=str(index)) for index in range(2)
    ]
    for replica in replicas:
        replica.wait_ready()
    began = time.monotonic()
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)  # flat out
    wait_until(lambda: all_committed(names), 300, "the two replicas to commit every record")
    rate = RECORDS / (time.monotonic() - began)
    totals = [replica.totals() for replica in replicas]
    assert all(t.get("consumed", 0) > RECORDS / 4 for t in totals), totals  # both ranges carried load
    truth = truth_from_topic(names.topic, RECORDS, invalid_of(records))
    pipeline.wait_exact(truth, timeout=180)
    stats = pipeline.aggregator_stats(redis)
    assert stats.get("overlaps", 0) == 0 and stats.get("duplicates", 0) == 0, stats
    applied = [applied_by(port) for port in (pipeline.api_port, second_api)]
    assert all(count > 0 for count in applied), f"summaries applied per aggregator replica: {applied}"
    print(f"scale out: {RECORDS:,} records produced and committed at {rate:,.0f} records/s end to end")
