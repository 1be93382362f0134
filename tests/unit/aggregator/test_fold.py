"""The fold's semantics (fold.py): offsets, status moves, alerts (the argument records: test_records.py)."""

from __future__ import annotations

from smartgrid_common.contracts import MeterUpdate, SecondPartial, Summary

from aggregator.fold import LiveModel, Outcome, classify, minute_partials
from aggregator.testing import ground_truth, make_readings, make_summaries


def summary(first: int, last: int, meters=(), partition: int = 0) -> Summary:
    return Summary("t", partition, first, last, 0, [SecondPartial(60, 1.0, 1, 1.0, 1.0)], [], list(meters))


def test_first_summary_of_a_partition_is_applied_whatever_its_offset():
    assert classify(None, 500, 600) is Outcome.APPLIED


def test_with_no_watermark_a_chained_summary_waits_for_the_chain_start():
    # Its predecessor may be pending at another replica (or about to be claimed from a dead one):
    # applying it first would turn the predecessor into a "duplicate" and lose it.
    assert classify(None, 601, 700, chained=True) is Outcome.WAIT
    model = LiveModel()
    first, second = summary(500, 600), summary(601, 700)
    second.chained = True
    assert model.apply(second) is Outcome.WAIT
    assert model.apply(first) is Outcome.APPLIED
    assert model.apply(second) is Outcome.APPLIED
    assert model.seconds[60].count == 2


def test_the_chained_flag_survives_json_and_is_absent_for_a_chain_start():
    start, next_one = summary(0, 9), summary(10, 19)
    next_one.chained = True
    assert b"chained" not in start.to_json()
    assert Summary.from_json(next_one.to_json()).chained is True
    assert Summary.from_json(start.to_json()).chained is False


def test_chained_summary_is_applied():
    assert classify(99, 100, 150) is Outcome.APPLIED


def test_summary_at_or_below_the_watermark_is_a_duplicate():
    assert classify(150, 100, 150) is Outcome.DUPLICATE
    assert classify(150, 0, 10) is Outcome.DUPLICATE


def test_summary_ahead_of_its_predecessor_waits():
    assert classify(99, 151, 200) is Outcome.WAIT


def test_summary_straddling_the_watermark_is_an_overlap():
    assert classify(120, 100, 150) is Outcome.OVERLAP


def test_replayed_summaries_do_not_double_count():
    model = LiveModel()
    assert model.apply(summary(0, 9)) is Outcome.APPLIED
    assert model.apply(summary(0, 9)) is Outcome.DUPLICATE
    assert model.apply(summary(10, 19)) is Outcome.APPLIED
    assert model.seconds[60].count == 2


def test_waiting_summary_applies_once_its_predecessor_did():
    model = LiveModel()
    model.apply(summary(0, 9))
    assert model.apply(summary(20, 29)) is Outcome.WAIT
    assert model.apply(summary(10, 19)) is Outcome.APPLIED
    assert model.apply(summary(20, 29)) is Outcome.APPLIED
    assert model.seconds[60].count == 3


def test_partitions_have_independent_watermarks():
    model = LiveModel()
    model.apply(summary(0, 9, partition=0))
    assert model.apply(summary(0, 9, partition=1)) is Outcome.APPLIED


def test_status_counts_move_from_the_status_the_aggregator_holds():
    model = LiveModel()
    model.apply(summary(0, 0, [MeterUpdate("m", "r", None, "ok", 1, 1)]))
    # A restarted ingest reports the meter as new again: must not count it twice.
    model.apply(summary(1, 1, [MeterUpdate("m", "r", None, "fault", 2, 2)]))
    assert model.status_counts == {"ok": 0, "fault": 1}
    assert model.region_meters == {"r": 1}


def test_faulty_meter_is_listed_with_since_and_removed_when_ok():
    model = LiveModel()
    model.apply(summary(0, 0, [MeterUpdate("m", "r", None, "fault", 1000, 1000)]))
    model.apply(summary(1, 1, [MeterUpdate("m", "r", "fault", "fault", 2000, 2000)]))
    assert model.alerts["m"].since_ms == 1000 and model.alerts["m"].last_reading_ms == 2000
    model.apply(summary(2, 2, [MeterUpdate("m", "r", "fault", "offline", 3000, 2000)]))
    assert model.alerts["m"].status == "offline" and model.alerts["m"].since_ms == 3000
    model.apply(summary(3, 3, [MeterUpdate("m", "r", "offline", "ok", 4000, 4000)]))
    assert "m" not in model.alerts


def test_minute_partials_roll_seconds_into_their_minute():
    parts = minute_partials([SecondPartial(59, 1.0, 1, 1.0, 1.0), SecondPartial(60, 2.0, 2, 0.5, 1.5),
                             SecondPartial(61, 3.0, 1, 3.0, 3.0)])
    assert [(m.minute, m.sum_kwh, m.count, m.min_kwh, m.max_kwh) for m in parts] == [
        (0, 1.0, 1, 1.0, 1.0), (60, 5.0, 3, 0.5, 3.0)]


def test_model_of_generated_stream_equals_independent_ground_truth():
    readings = make_readings(meters=100, seconds=8, start=1_800_000_000, seed=9)
    model = LiveModel()
    for item in make_summaries(readings, partitions=3, batch=50):
        model.apply(item)
    truth = ground_truth(readings)
    assert {s: b.count for s, b in model.seconds.items()} == {s: v[1] for s, v in truth["seconds"].items()}
    assert {k: b.meter_count for k, b in model.regions.items()} == {k: v[3] for k, v in truth["regions"].items()}
    assert {k: v for k, v in model.status_counts.items() if v} == truth["status"]
