"""Meters with wrong clocks in the middle of a steady stream, through the whole pipeline.

A reading from 2100, one from two hours ago, one in epoch seconds where milliseconds are expected
(1970), and a far-future reading from a meter that then goes on sending sane readings: every good
second stays exact in InfluxDB and in the dashboard API, the live view stays on the present, no
meter goes offline because of them, the dead-letter topic holds the refused ones with reasons,
and the meters show as ``clock_skew`` until they send a sane reading.
"""

from __future__ import annotations

import json
import time

import pytest
from simulator import produce
from smartgrid_common.contracts import DLQ_REASON_HEADER

from ingest_harness import BROKERS, read_topic
from test_pipeline_e2e import dataset, now_ms, pipeline, truth_from_topic  # noqa: F401 - fixtures
from test_writer_influx import query

pytestmark = pytest.mark.integration

OFFLINE_AFTER_S = 60  # longer than the dataset: a meter goes offline only because of a wrong clock
SKEW_S = 300


def hostile(meter: str, stamp: int, kwh: float = 9_999.0) -> tuple[bytes, bytes]:
    value = {"meter_id": meter, "timestamp": stamp, "consumption_kwh": kwh, "region": "north", "status": "ok"}
    return meter.encode(), json.dumps(value).encode()


def test_wrong_clocks_mid_stream_leave_every_good_second_exact_and_the_live_view_on_the_present(names, pipeline, redis):
    start = (now_ms() // 1000 - 90) * 1000
    records = dataset(8_000, meters=500, start_ms=start, seed=41, malformed_fraction=0.0, late_fraction=0.0)
    half = len(records) // 2
    flagged_then_cleared = json.loads(records[0].value)["meter_id"]  # it reports again in the second half
    now_s = now_ms() // 1000
    bad = [
        hostile("clock-2100", 4_102_444_800_000),
        hostile("clock-2h-behind", (now_s - 7_200) * 1000),
        hostile("clock-epoch-seconds", now_s),  # seconds read as milliseconds: January 1970
        hostile(flagged_then_cleared, 4_102_444_800_000),
    ]
    stream = [(r.key, r.value) for r in records[:half]] + bad + [(r.key, r.value) for r in records[half:]]
    produce(stream, BROKERS, names.topic)
    bad_values = frozenset(value for _, value in bad)

    truth = truth_from_topic(names.topic, len(stream), bad_values, offline_after_s=OFFLINE_AFTER_S)
    skewed = {"clock-2100", "clock-2h-behind", "clock-epoch-seconds"}
    truth["status"]["clock_skew"] = len(skewed)
    truth["alerts"].update({meter: "clock_skew" for meter in skewed})
    assert "offline" not in truth["status"] and flagged_then_cleared not in truth["alerts"]

    pipeline.start_aggregator()
    pipeline.start_writer()
    service = pipeline.start_ingest(SMARTGRID_OFFLINE_AFTER=f"{OFFLINE_AFTER_S}s", SMARTGRID_MAX_CLOCK_SKEW=f"{SKEW_S}s")
    service.wait_committed(len(stream))
    pipeline.wait_exact(truth)

    # The live view is on the present: no second of 2100, no newest second beyond the skew.
    latest = int(redis.get(f"{names.prefix}:agg:latest"))
    assert start // 1000 <= latest <= time.time() + SKEW_S
    assert max(pipeline.api_live()) == latest
    assert pipeline.aggregator_stats(redis).get("too_late_seconds", 0) == 0

    # The refused ones are in the dead-letter topic with their reasons: too far ahead (ingest),
    # older than the retention policy (InfluxDB's own reason).
    dead = {json.loads(m.value())["meter_id"]: dict(m.headers())[DLQ_REASON_HEADER].decode() for m in read_topic(names.dlq, 3)}
    assert set(dead) == {"clock-2100", flagged_then_cleared, "clock-epoch-seconds"}, dead
    assert dead["clock-2100"].startswith("clock skew: timestamp 2100-01-01T00:00:00.000Z is ")
    assert dead[flagged_then_cleared].startswith("clock skew: ")
    assert "retention policy" in dead["clock-epoch-seconds"], dead["clock-epoch-seconds"]
    totals = service.totals()
    assert totals["dead_lettered"] == 3 and totals["written"] == len(stream) - 3

    # Two hours behind is within the raw retention: stored raw, outside every live bucket.
    raw = query(names.database, "SELECT consumption_kwh FROM raw_data.energy_consumption WHERE meter_id = 'clock-2h-behind'")
    assert [row[0] for row in raw[0]["values"]] == [now_s - 7_200]
