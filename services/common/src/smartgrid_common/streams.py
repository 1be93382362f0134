"""Redis Streams consumer-group plumbing: read own pending, claim the dead's, read new, trim.

Generic (no knowledge of summaries or rollups): the aggregator reads summaries with it, the writer
reads rollups.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import ResponseError

Entry = tuple[bytes, dict[bytes, bytes] | None]
"""(stream id, fields); fields is None for an entry trimmed away while pending."""


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) if missing; start from the stream's beginning."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


class GroupReader:
    """Reads a stream as one consumer of a group, so that no entry is ever left behind.

    Order of business on every :meth:`read`: this consumer's own pending entries first (left by a
    previous run under the same name, i.e. a restarted pod), then, every ``claim_idle / 2``,
    entries another consumer left pending longer than ``claim_idle`` (it presumably died), then
    new entries.
    """

    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        consumer: str,
        count: int,
        block_s: float,
        claim_idle_s: float,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.count = count
        self.block_ms = max(1, int(block_s * 1000))
        self.claim_idle_ms = max(1, int(claim_idle_s * 1000))
        self._own_pending_cursor: bytes | None = b"0"
        self._claim_cursor = b"0-0"
        self._next_claim = 0.0
        self.claimed_total = 0

    async def read(self) -> list[Entry]:
        """The next entries to process (possibly empty after blocking ``block_s``)."""
        if self._own_pending_cursor is not None:
            entries = await self._xreadgroup(self._own_pending_cursor, block=None)
            if entries:
                self._own_pending_cursor = entries[-1][0]
                return entries
            self._own_pending_cursor = None
        if time.monotonic() >= self._next_claim:
            claimed = await self._autoclaim()
            if claimed:
                return claimed
            self._next_claim = time.monotonic() + self.claim_idle_ms / 2000
        return await self._xreadgroup(b">", block=self.block_ms)

    async def _xreadgroup(self, start: bytes, block: int | None) -> list[Entry]:
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=self.count, block=block
        )
        if not reply:
            return []
        # RESP2 (the client's default): [[stream, [(id, fields), ...]]].
        return [(entry_id, fields) for _, entries in reply for entry_id, fields in entries]

    async def _autoclaim(self) -> list[Entry]:
        reply = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, self._claim_cursor, count=self.count
        )
        self._claim_cursor = reply[0]
        deleted = reply[2] if len(reply) > 2 else []
        if deleted:
            # Trimmed while pending: nothing to process; acknowledge so the PEL does not grow.
            await self.ack(list(deleted))
        claimed = [(entry_id, fields) for entry_id, fields in reply[1]]
        self.claimed_total += len(claimed)
        return claimed

    async def touch(self, ids: list[bytes]) -> None:
        """Keep entries this consumer still holds (waiting for a retry) from being claimed."""
        if ids:
            await self.redis.xclaim(self.stream, self.group, self.consumer, 0, ids, justid=True)

    async def ack(self, ids: list[bytes]) -> None:
        """Acknowledge processed entries."""
        if ids:
            await self.redis.xack(self.stream, self.group, *ids)


class Unreadable:
    """Entries a reader could not parse (a newer contract version, or garbage), left unacknowledged.

    Acknowledging them would lose what they carry; leaving them pending keeps them for a reader that
    can read them (after a rolling upgrade it claims them once they are ``claim_idle`` old). Until
    then the service says why in ``/readyz`` and in one log line per entry. An entry not seen again
    for ``forget_after`` seconds (another replica claimed and read it) no longer counts.
    """

    def __init__(self, kind: str, log: logging.Logger, forget_after: float) -> None:
        self.kind = kind
        self.log = log
        self.forget_after = forget_after
        self._seen: dict[bytes, tuple[str, float]] = {}  # entry id -> (reason, last seen, monotonic)

    def note(self, entry_id: bytes, reason: str) -> None:
        """Record an entry that cannot be read (logged the first time this process sees it)."""
        if entry_id not in self._seen:
            self.log.error(
                f"{self.kind} cannot be read: left unacknowledged; what follows it waits",
                extra={"entry": entry_id.decode(), "reason": reason},
            )
        self._seen[entry_id] = (reason, time.monotonic())

    def problem(self) -> str | None:
        """Why the service is not ready, or None."""
        now = time.monotonic()
        self._seen = {k: v for k, v in self._seen.items() if now - v[1] < self.forget_after}
        if not self._seen:
            return None
        entry_id, (reason, _) = next(iter(self._seen.items()))
        return f"{len(self._seen)} {self.kind}(s) cannot be read, e.g. {entry_id.decode()}: {reason}"


async def trim_consumed(redis: Redis, stream: str) -> bytes | None:
    """Drop entries every group of the stream has delivered and acknowledged; returns the MINID.

    Never drops an entry some group still has pending or has not read yet.
    """
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return None
    floor: bytes | None = None
    for info in groups:
        name = info["name"]
        candidate = info["last-delivered-id"]
        if int(info["pending"]):
            summary = await redis.xpending(stream, name)
            candidate = summary["min"]
        if isinstance(candidate, str):
            candidate = candidate.encode()
        if floor is None or _id_key(candidate) < _id_key(floor):
            floor = candidate
    if floor and floor != b"0-0":
        await redis.xtrim(stream, minid=floor)
    return floor


def _id_key(entry_id: bytes) -> tuple[int, int]:
    millis, _, sequence = entry_id.partition(b"-")
    return int(millis), int(sequence or 0)
