"""When the live path publishes: every interval, and early once an event second closes."""

from __future__ import annotations

from ingest.schedule import PublishSchedule


def test_without_a_closed_second_it_publishes_on_the_interval():
    schedule = PublishSchedule(0.25, 0.08, now=100.0)
    assert schedule.due() == 100.25
    schedule.saw(1_000, now=100.1)  # the first second seen closes nothing
    schedule.saw(1_000, now=100.2)
    assert schedule.due() == 100.25
    schedule.published(100.25)
    assert schedule.due() == 100.5


def test_a_closed_second_is_published_after_the_grace():
    schedule = PublishSchedule(0.25, 0.08, now=100.0)
    schedule.saw(1_000, now=100.0)
    assert schedule.watch_after() == 1_000  # a read returns at the first reading of a later second
    schedule.saw(1_001, now=100.15)
    assert schedule.due() == 100.15 + 0.08
    assert schedule.watch_after() is None  # already closing: read until the grace is over
    schedule.saw(1_002, now=100.2)  # another second closing meanwhile changes nothing
    assert schedule.due() == 100.15 + 0.08
    schedule.published(100.23)
    assert schedule.due() == 100.23 + 0.25
    assert schedule.watch_after() == 1_002


def test_an_early_publish_waits_for_half_an_interval_since_the_last_one():
    schedule = PublishSchedule(0.25, 0.08, now=100.0)
    schedule.saw(1_000, now=100.0)
    schedule.published(100.0)
    schedule.saw(1_001, now=100.01)  # a replay crossing seconds right after a publish
    assert schedule.due() == 100.125
    schedule.published(100.125)
    schedule.saw(1_050, now=100.13)
    assert schedule.due() == 100.25


def test_older_seconds_close_nothing_and_zero_grace_turns_early_publishes_off():
    schedule = PublishSchedule(0.25, 0.08, now=100.0)
    schedule.saw(1_005, now=100.0)
    schedule.saw(1_003, now=100.05)  # a late reading
    schedule.saw(None, now=100.06)  # a read with no valid reading
    assert schedule.due() == 100.25
    off = PublishSchedule(0.25, 0.0, now=100.0)
    off.saw(1_000, now=100.0)
    assert off.watch_after() is None
    off.saw(1_001, now=100.1)
    assert off.due() == 100.25
