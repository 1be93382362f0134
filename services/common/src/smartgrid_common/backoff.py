"""The one retry rule of every service: wait ``first``, then twice as long each time, up to a cap.

:class:`Backoff` only counts and computes; the caller waits in its own way (``stop.wait(delay)``
in threads, ``await asyncio.sleep(delay)`` in the asyncio services), so a stop event still ends
a wait at once. Retrying never gives up: the services report not-ready instead (after
``INFLUXDB_MAX_RETRIES`` failures) and go on.
"""

from __future__ import annotations

from .settings import InfluxSettings

INFLUX_MAX_DELAY = 30.0
"""Cap of the InfluxDB retry delay (README: INFLUXDB_RETRY_INTERVAL doubles up to 30 s)."""

REDIS_FIRST_DELAY = 0.2
"""First retry delay after a Redis failure. No setting names one (INFLUXDB_RETRY_INTERVAL is about
InfluxDB, and 1 s would stall the live view longer after a Redis blip), so it stays a constant."""

REDIS_MAX_DELAY = 10.0
"""Cap of the Redis retry delay: a Redis that is back is noticed within 10 s."""


class Backoff:
    """Exponential retry delays: ``first``, ``first * factor``, ... capped at ``maximum``.

    Call :meth:`next` after each failure for the delay to wait, and :meth:`reset` after a success
    so that the next failure waits ``first`` again. :attr:`attempts` counts the failures since the
    last reset.
    """

    def __init__(self, first: float, maximum: float, factor: float = 2.0) -> None:
        if first <= 0:
            raise ValueError("the first retry delay must be positive (0 would retry in a busy loop)")
        if maximum < first:
            raise ValueError("the maximum retry delay cannot be shorter than the first")
        if factor < 1:
            raise ValueError("the backoff factor must be at least 1")
        self.first, self.maximum, self.factor = first, maximum, factor
        self.attempts = 0

    def next(self) -> float:
        """Count one more failure and return the seconds to wait before the next attempt."""
        # Capped before it is raised to a large power: attempts grow without bound while a
        # dependency stays down, and factor ** attempts would overflow a float.
        delay = self.first
        for _ in range(self.attempts):
            delay *= self.factor
            if delay >= self.maximum:
                break
        self.attempts += 1
        return min(delay, self.maximum)

    def reset(self) -> None:
        """Forget the failures (after a success): the next failure waits ``first`` again."""
        self.attempts = 0


def influx_backoff(settings: InfluxSettings) -> Backoff:
    """Retry delays of InfluxDB requests: INFLUXDB_RETRY_INTERVAL, doubling up to 30 s.

    An interval of 0 retries after 100 ms (not in a busy loop); one above 30 s is kept as it is.
    """
    first = settings.influxdb_retry_interval or 0.1
    return Backoff(first, max(first, INFLUX_MAX_DELAY))


def redis_backoff() -> Backoff:
    """Retry delays of Redis calls: 200 ms, doubling up to 10 s."""
    return Backoff(REDIS_FIRST_DELAY, REDIS_MAX_DELAY)
