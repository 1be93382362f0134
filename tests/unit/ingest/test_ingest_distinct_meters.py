"""Distinct meters per (second, region) counted in ingest: each summary carries the meters NEW to
each bucket, so the aggregator adds counts. A meter counts once per bucket whatever the batches,
summaries, late readings, restarts (the checkpoint holds each meter's seen seconds) or replays."""

from __future__ import annotations

import pytest
from ingest._hotpath import Processor

from test_ingest_summaries import T0, Feed, reading

S = T0 // 1000


def processor(late_window_ms: int = 300_000) -> Processor:
    return Processor("grid", "ms", True, 600_000, lines=False, late_window_ms=late_window_ms)


def new_meters(summary) -> dict[tuple[int, str], int]:
    return {(r.second, r.region): r.new_meters for r in summary.regions} if summary else {}


def test_a_meter_counts_once_per_bucket_across_batches_and_summaries():
    feed = Feed(processor())
    first = feed.batch(reading("a", T0, 1.0), reading("a", T0 + 500, 1.0), reading("b", T0 + 10, 1.0))
    second = feed.batch(reading("a", T0 + 900, 1.0), reading("c", T0 + 950, 1.0), reading("a", T0 + 1000, 1.0))
    assert new_meters(first) == {(S, "north"): 2}
    assert new_meters(second) == {(S, "north"): 1, (S + 1, "north"): 1}  # c is new; a is new to S + 1


def test_a_late_reading_of_a_meter_already_counted_in_its_bucket_adds_no_meter():
    feed = Feed(processor())
    feed.batch(reading("a", T0, 1.0), reading("b", T0, 1.0))
    feed.batch(*[reading("a", T0 + k * 1000, 1.0) for k in range(1, 120)])
    late = feed.batch(reading("a", T0 + 300, 2.0), reading("b", T0 + 1_000, 2.0))
    assert new_meters(late) == {(S, "north"): 0, (S + 1, "north"): 1}  # b was not in S + 1 yet
    assert sum(r.count for r in late.regions) == 2  # both readings still count


def test_each_region_bucket_counts_its_own_meters():
    feed = Feed(processor())
    summary = feed.batch(reading("a", T0, 1.0), reading("b", T0, 1.0, region="south"), reading("c", T0, 1.0, region="south"))
    assert new_meters(summary) == {(S, "north"): 1, (S, "south"): 2}


def test_a_restart_from_a_checkpoint_does_not_count_a_meter_again():
    before = processor()
    feed = Feed(before)
    feed.batch(reading("a", T0, 1.0), reading("b", T0, 1.0))
    snapshot = before.snapshot(0)
    restarted = processor()
    restarted.resume(0, published_upto=1, snapshot=snapshot)
    summary = Feed(restarted, offset=2).batch(reading("a", T0 + 200, 1.0), reading("c", T0 + 300, 1.0))
    assert new_meters(summary) == {(S, "north"): 1}


def test_a_replay_of_published_records_rebuilds_the_seen_seconds_without_counting():
    restarted = processor()
    restarted.resume(0, published_upto=1)  # no checkpoint: offsets 0 and 1 are replayed, suppressed
    feed = Feed(restarted)
    assert feed.batch(reading("a", T0, 1.0), reading("b", T0, 1.0)) is None
    summary = feed.batch(reading("a", T0 + 100, 1.0), reading("d", T0 + 100, 1.0))
    assert new_meters(summary) == {(S, "north"): 1}


def json_checkpoint(seen: dict[str, int] | None) -> bytes:
    """A checkpoint as releases before the binary format wrote it (JSON): meter "a" of region
    north, status ok, last heard at T0; with ``seen``, each meter's ring marks that second."""
    import json

    snapshot = {"watermark_ms": T0, "meters": {"a": ["north", "ok", T0, False]}}
    if seen is not None:
        words = (300 + 2 + 63) // 64  # the ring of a 300 s late window
        rings = {}
        for meter, second in seen.items():
            bits, slot = [0] * words, second % (words * 64)
            bits[slot // 64] |= 1 << (slot % 64)
            rings[meter] = [second, bits]
        snapshot["seen"] = rings
    return json.dumps(snapshot).encode()


def test_a_json_checkpoint_of_an_earlier_release_restores_its_seen_seconds():
    restarted = processor()
    restarted.resume(0, published_upto=0, snapshot=json_checkpoint({"a": S}))
    summary = Feed(restarted, offset=1).batch(reading("a", T0 + 10, 1.0), reading("a", T0 + 1_000, 1.0))
    assert new_meters(summary) == {(S, "north"): 0, (S + 1, "north"): 1}  # a was seen in S already
    assert restarted.snapshot(0).startswith(b"SGMS")  # and it is checkpointed in the binary format


def test_a_checkpoint_of_an_older_release_without_seen_seconds_still_restores():
    restarted = processor()
    restarted.resume(0, published_upto=0, snapshot=json_checkpoint(None))
    summary = Feed(restarted, offset=1).batch(reading("a", T0 + 1_000, 1.0))
    assert new_meters(summary) == {(S + 1, "north"): 1}


def test_a_checkpoint_restores_to_the_same_state_and_a_damaged_one_is_refused():
    before = processor()
    Feed(before).batch(reading("a", T0, 1.0), reading("b", T0 + 2_000, 1.0, region="south", status="fault"))
    snapshot = before.snapshot(0)
    restarted = processor()
    restarted.resume(0, published_upto=1, snapshot=snapshot)
    assert restarted.snapshot(0) == snapshot
    with pytest.raises(ValueError, match="bad snapshot"):
        processor().resume(0, published_upto=1, snapshot=snapshot[: len(snapshot) // 2])


@pytest.mark.parametrize("late_window_ms", [1_000, 64_000, 300_000, 3_600_000])
def test_the_seen_seconds_cover_the_late_window_whatever_its_length(late_window_ms):
    feed = Feed(processor(late_window_ms))
    window_s = late_window_ms // 1000
    feed.batch(reading("a", T0, 1.0))
    feed.batch(reading("a", T0 + window_s * 1000, 1.0))  # the watermark moves one window on
    again = feed.batch(reading("a", T0, 1.0))  # exactly the late window behind: still counts
    assert new_meters(again) == {(S, "north"): 0}


def test_meters_are_told_apart_by_their_whole_id_whatever_its_length_across_growth_and_a_restart():
    # Ids short enough to be stored inline and longer ones, non-ASCII too, sharing long prefixes;
    # enough of them that the meter table grows several times.
    ids = [f"m{n}" for n in range(3_000)] + [f"meter-{'ü' * 20}-{n}" for n in range(3_000)]
    before = processor()
    feed = Feed(before)
    first = feed.batch(*[reading(meter, T0, 1.0) for meter in ids])
    assert new_meters(first) == {(S, "north"): len(ids)}
    restarted = processor()
    restarted.resume(0, published_upto=feed.offset - 1, snapshot=before.snapshot(0))
    again = Feed(restarted, offset=feed.offset).batch(*[reading(meter, T0 + 500, 1.0) for meter in ids[::7]], reading("m3000", T0 + 500, 1.0))
    assert new_meters(again) == {(S, "north"): 1}  # only m3000 is new to the second
    assert restarted.snapshot(0) != before.snapshot(0)  # it knows one meter more
