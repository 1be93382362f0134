"""The aggregator's script calls stay short: a read is split by summaries and by meter updates."""

from __future__ import annotations

import random
from types import SimpleNamespace

from aggregator.worker import fold_chunks


def items(meter_counts: list[int]) -> list[tuple[bytes, SimpleNamespace]]:
    return [(f"{i}-0".encode(), SimpleNamespace(meters=[None] * n)) for i, n in enumerate(meter_counts)]


def meters(chunk) -> int:
    return sum(len(summary.meters) for _, summary in chunk)


def test_runs_keep_the_order_and_stay_within_both_bounds_and_are_as_long_as_allowed():
    rng = random.Random(7)
    for _ in range(200):
        given = items([rng.choice([0, 0, 3, 40, 900, 3_000, 12_000]) for _ in range(rng.randint(1, 150))])
        most, most_meters = rng.choice([1, 5, 20, 100]), rng.choice([1, 1_000, 5_000, 10_000])
        chunks = list(fold_chunks(given, most, most_meters))
        assert [item for chunk in chunks for item in chunk] == given
        for chunk, following in zip(chunks, [*chunks[1:], None]):
            assert 1 <= len(chunk) <= most
            assert len(chunk) == 1 or meters(chunk) <= most_meters
            if following is not None:  # it ended because the next summary would not fit
                assert len(chunk) == most or meters(chunk) + meters(following[:1]) > most_meters


def test_a_start_on_100k_new_meters_is_folded_in_calls_of_at_most_10k_meter_updates():
    # 32 partitions' first summaries, each with every meter of its partition new.
    chunks = list(fold_chunks(items([100_000 // 32] * 32 + [5] * 68), 100, 10_000))
    assert max(meters(chunk) for chunk in chunks) <= 10_000
    assert len(chunks) == 11  # 3 summaries of 3,125 per call, then the small ones together
    assert list(fold_chunks(items([25_000]), 100, 10_000)) == [items([25_000])]
