"""Which partitions a replica, and each of its worker processes, consumes. Pure functions."""

from __future__ import annotations

import math


def parse_partition_list(text: str) -> list[int]:
    """``"0-7,12"`` -> ``[0, ..., 7, 12]``; empty text -> ``[]``. Raises ValueError with the reason."""
    partitions: set[int] = set()
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise ValueError(f"{part!r} is not a partition or a range: write it like 0-7,12")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"range {part!r} ends before it starts")
        partitions.update(range(first, last + 1))
    return sorted(partitions)


def replica_range(replica: int, partitions_per_replica: int, partition_count: int) -> list[int]:
    """Replica ``i`` consumes ``[i*k, (i+1)*k)`` (clipped to the topic)."""
    start = replica * partitions_per_replica
    return list(range(start, min(start + partitions_per_replica, partition_count)))


def partitions_per_replica(consumer_count: int, partition_count: int) -> int:
    """Range size when only the replica count is known: ceil(partitions / replicas)."""
    return math.ceil(partition_count / consumer_count) if consumer_count > 0 else partition_count


def split_among_workers(partitions: list[int], workers: int) -> list[list[int]]:
    """Deal the pod's partitions to its workers round-robin; workers without any get none."""
    shares: list[list[int]] = [[] for _ in range(workers)]
    for index, partition in enumerate(partitions):
        shares[index % workers].append(partition)
    return [share for share in shares if share]


def format_ranges(partitions: list[int]) -> str:
    """``[0,1,2,5]`` -> ``"0-2,5"`` (for logs and status)."""
    ranges: list[str] = []
    for partition in sorted(partitions):
        if ranges and partition == int(ranges[-1].split("-")[-1]) + 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{partition}"
        else:
            ranges.append(str(partition))
    return ",".join(ranges)
