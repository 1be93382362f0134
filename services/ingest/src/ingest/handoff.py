"""The hand-off: lines the live thread read, on their way to the InfluxDB path.

A worker reads each record once (:class:`ingest._hotpath.Reader`, in the live thread): the
reading is folded into the live summaries and, while the InfluxDB path is *attached*, also
becomes a line of line protocol handed to the InfluxDB path through this queue. The live thread
never waits for the InfluxDB path: when InfluxDB is slow and the lines would not fit, it
*detaches* (drops that poll's lines, builds no more and queues :data:`DETACHED`); the InfluxDB
path then reads Kafka itself from where it is (:mod:`ingest.catchup`) until it is close behind
the live thread again, and attaches again (:meth:`ingest.live.LivePath.hand_off`).

Invariants:

* ``records`` counts handed-off records that are not committed yet, queued or in the InfluxDB
  path's write units, plus those the InfluxDB path read itself; the live thread hands off only
  while it stays within ``limit`` (``PROCESSOR_QUEUE_SIZE``), and the InfluxDB path's own reads
  wait past ``limit`` records in its units: memory stays bounded whatever InfluxDB does.
* Per partition the queued lines are in offset order, each record at most once, and, from an
  attachment on, start at the offset the attachment returned.
"""

from __future__ import annotations

import collections
import threading

from ._hotpath import Lines

DETACHED = "detached"  # queued when the live thread stops handing lines off


class HandOff:
    """A bounded queue of :class:`Lines` (and :data:`DETACHED` markers), counted in records."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.records = 0  # not yet committed (see the module's invariants)
        self._items: collections.deque[Lines | str] = collections.deque()
        self._ready = threading.Condition()

    # ---- the live thread ------------------------------------------------------------------

    def offer(self, lines: Lines) -> bool:
        """Queue a poll's lines if they fit; False (nothing queued) when they do not."""
        count = sum(r[3] for r in lines.ranges)
        with self._ready:
            if self.records + count > self.limit:
                return False
            self.records += count
            self._items.append(lines)
            self._ready.notify()
        return True

    def detach(self) -> None:
        """Tell the InfluxDB path that no lines follow until it attaches again."""
        with self._ready:
            self._items.append(DETACHED)
            self._ready.notify()

    # ---- the InfluxDB path ----------------------------------------------------------------

    def take(self, timeout: float) -> Lines | str | None:
        """The next item, waiting up to ``timeout`` seconds; None when there is none."""
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            return self._items.popleft() if self._items else None

    def read_own(self, count: int) -> None:
        """The InfluxDB path read ``count`` records itself (they count against the limit too)."""
        with self._ready:
            self.records += count

    def settle(self, count: int) -> None:
        """``count`` records left the InfluxDB path (committed, or dropped at a revocation)."""
        with self._ready:
            self.records -= count
