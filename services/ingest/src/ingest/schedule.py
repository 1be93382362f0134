"""When the live path publishes: every interval, and early once an event second closes."""

from __future__ import annotations


class PublishSchedule:
    """When the live path publishes: every ``interval``, and early when an event second closes.

    A second on the dashboard is complete once every reading of it is published. A reading of a
    later second closes it; ``grace`` later (the last readings of it from the other partitions are
    still on their way: producer linger, fetch wait) it is published at once instead of at the
    next interval. An early publish needs half an interval since the last one, so a replay that
    crosses many seconds per read publishes at most twice per interval. At a steady load the
    interval publishes fall into step with the early ones.
    """

    def __init__(self, interval: float, grace: float, now: float) -> None:
        self.interval, self.grace = interval, grace
        self.last = now
        self.newest: int | None = None  # newest event second read so far
        self.closed_at: float | None = None  # when a second closed that is not published yet

    def watch_after(self) -> int | None:
        """Second after which a read should return at once (None: no early return wanted)."""
        return self.newest if self.grace > 0 and self.closed_at is None else None

    def saw(self, newest_second: int | None, now: float) -> None:
        if newest_second is None or (self.newest is not None and newest_second <= self.newest):
            return
        if self.newest is not None and self.grace > 0 and self.closed_at is None:
            self.closed_at = now
        self.newest = newest_second

    def due(self) -> float:
        """When the next publish is due."""
        due = self.last + self.interval
        if self.closed_at is not None:
            due = min(due, max(self.closed_at + self.grace, self.last + self.interval / 2))
        return due

    def published(self, now: float) -> None:
        self.last, self.closed_at = now, None
