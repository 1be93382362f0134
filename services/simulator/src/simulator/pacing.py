"""Rate pacing as arithmetic: how long to wait so that ``sent`` records took ``sent / rate`` seconds.

The pacer never sleeps by itself; the shell asks it and sleeps. Pacing is against the start of the
run, not the previous batch, so short stalls are caught up and the long-run rate is exact.
"""

from __future__ import annotations

PACED_BATCH_SECONDS = 0.02
"""A paced run sends batches of about 20 ms worth of records, so the stream stays smooth."""


def batch_size(rate: float, max_batch: int) -> int:
    """Records per batch: ``max_batch`` flat out (rate 0), else ~20 ms worth, at least one."""
    if rate <= 0:
        return max_batch
    return max(1, min(max_batch, int(rate * PACED_BATCH_SECONDS)))


def delay(rate: float, sent: int, elapsed: float) -> float:
    """Seconds to wait before sending more, given ``sent`` records in ``elapsed`` seconds.

    Zero when flat out (rate 0) or behind schedule.
    """
    if rate <= 0:
        return 0.0
    return max(0.0, sent / rate - elapsed)


def achieved_rate(count: int, seconds: float) -> float:
    """Records per second, 0 for an empty interval."""
    return count / seconds if seconds > 0 else 0.0
