"""Event timestamps as the input contract allows them: RFC 3339 strings or epoch numbers."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

TIMESTAMP_FORMATS = ("rfc3339", "epoch-ms", "epoch-s", "mixed")
"""``mixed`` varies per record between RFC 3339 (``Z``, ``+00:00`` and a non-UTC offset, all
naming the same instant) and epoch milliseconds. It never mixes in epoch seconds: the unit of epoch
numbers is one setting of the consumer, so a stream cannot carry both units."""

MIXED_OFFSET_MINUTES = -300
"""The non-UTC offset used by ``mixed`` (US Eastern standard time)."""


def rfc3339(epoch_ms: int, offset_minutes: int = 0) -> str:
    """``2024-05-01T12:00:00.123Z`` (or ``...+02:00`` at another offset), millisecond precision."""
    seconds, millis = divmod(epoch_ms, 1000)
    local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds + offset_minutes * 60))
    if offset_minutes == 0:
        return f"{local}.{millis:03d}Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{local}.{millis:03d}{sign}{hours:02d}:{minutes:02d}"


def encode(epoch_ms: int, timestamp_format: str) -> bytes:
    """The JSON value of the ``timestamp`` field in one of the non-mixed formats."""
    if timestamp_format == "rfc3339":
        return b'"' + rfc3339(epoch_ms).encode() + b'"'
    if timestamp_format == "epoch-ms":
        return b"%d" % epoch_ms
    if timestamp_format == "epoch-s":
        return b"%d.%03d" % divmod(epoch_ms, 1000)
    raise ValueError(f"unknown timestamp format {timestamp_format!r}: use one of {', '.join(TIMESTAMP_FORMATS)}")


def mixed_variants(epoch_ms: int) -> tuple[bytes, ...]:
    """The encodings ``mixed`` chooses from, all of the same instant."""
    return (
        b'"' + rfc3339(epoch_ms).encode() + b'"',
        b'"' + rfc3339(epoch_ms).replace("Z", "+00:00").encode() + b'"',
        b'"' + rfc3339(epoch_ms, MIXED_OFFSET_MINUTES).encode() + b'"',
        b"%d" % epoch_ms,
    )


def parse_start(value: str) -> int:
    """Epoch milliseconds of an RFC 3339 instant such as ``2024-05-01T00:00:00Z``.

    A value without an offset is taken as UTC.
    """
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 time: write it like 2024-05-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)
