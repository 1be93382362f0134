"""Summaries and rollups carry a contract version; a reader refuses a newer one, never guesses."""

from __future__ import annotations

import time

import orjson
import pytest
from ingest._hotpath import Processor
from smartgrid_common.contracts import (
    ROLLUP_VERSION,
    SUMMARY_VERSION,
    Rollup,
    SecondPartial,
    SecondRollup,
    Summary,
    UnsupportedVersion,
)


def summary() -> Summary:
    return Summary("t", 1, 0, 9, 1_000, [SecondPartial(1, 2.0, 2, 1.0, 1.0)], chained=True)


def test_summaries_and_rollups_carry_their_version_and_read_back():
    data = summary().to_json()
    assert orjson.loads(data)["v"] == SUMMARY_VERSION
    assert Summary.from_json(data) == summary()
    rollup = Rollup(7, 1_000, [SecondRollup(1, 2.0, 2, 1.0, 1.0)])
    assert orjson.loads(rollup.to_json())["v"] == ROLLUP_VERSION
    assert Rollup.from_json(rollup.to_json()) == rollup


def test_the_rust_hot_path_writes_the_same_summary_version():
    processor = Processor("t", "ms", True, lines=False)
    reading = orjson.dumps({"meter_id": "a", "timestamp": int(time.time() * 1000), "consumption_kwh": 1, "region": "r", "status": "ok"})
    processor.process([reading], [0], [0])
    [(_, data)] = processor.take_summaries()
    assert orjson.loads(data)["v"] == SUMMARY_VERSION


def test_a_message_without_a_version_is_version_one():
    raw = orjson.loads(summary().to_json())
    del raw["v"]
    assert Summary.from_json(orjson.dumps(raw)) == summary()


@pytest.mark.parametrize("version", [SUMMARY_VERSION + 1, 0, "2"])
def test_a_summary_of_another_version_is_refused_with_what_to_do(version):
    raw = orjson.loads(summary().to_json()) | {"v": version}
    with pytest.raises(UnsupportedVersion, match="summary contract version .*upgrade this service"):
        Summary.from_json(orjson.dumps(raw))


def test_a_rollup_of_a_newer_version_is_refused():
    raw = orjson.loads(Rollup(7, 1_000).to_json()) | {"v": ROLLUP_VERSION + 1}
    with pytest.raises(UnsupportedVersion, match="rollup contract version 2"):
        Rollup.from_json(orjson.dumps(raw))
