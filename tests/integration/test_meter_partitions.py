"""Distinct meters are counted in ingest, per partition: that needs every reading of a meter in one
partition (the topic keyed by meter_id). A producer that does not key by meter_id is detected."""

from __future__ import annotations

import httpx
import pytest

from test_pipeline_e2e import now_ms, pipeline, produce_to, reading, wait_until  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def test_a_meter_on_two_partitions_is_detected_with_a_metric_and_a_warning(names, pipeline, redis):
    base = (now_ms() // 1000 - 60) * 1000
    produce_to(names.topic, 3, [(b"roaming", reading("roaming", base, 1.0)), (b"home", reading("home", base, 1.0))])
    pipeline.start_aggregator()
    service = pipeline.start_ingest()
    service.wait_committed(2)
    wait_until(lambda: redis.hget(f"{names.prefix}:meter_status", "roaming") is not None, 30, "the first fold")
    produce_to(names.topic, 17, [(b"roaming", reading("roaming", base + 1000, 2.0))])  # not keyed: elsewhere
    service.wait_committed(3)

    def metric() -> float:
        text = httpx.get(f"{pipeline.api}/metrics", timeout=5).text
        line = next(line for line in text.splitlines() if line.startswith("aggregator_meters_new_again "))
        return float(line.split()[1])

    wait_until(lambda: metric() == 1.0, 40, "the aggregator to report the meter seen new again")
    log = "\n".join(path.read_text() for path in pipeline.logs.glob("aggregator-*.log"))
    assert "readings of one meter arrive on several Kafka partitions" in log
