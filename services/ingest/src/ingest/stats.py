"""Worker statistics: counted in each worker process, exposed by the pod's /metrics.

Worker processes cannot share prometheus-client objects with the HTTP process, so each worker
sends a snapshot of its counters every second over a queue and the HTTP process exposes the
latest snapshot of every worker through a custom collector.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

COUNTERS = {
    "consumed": "Records taken from Kafka",
    "written": "Points InfluxDB acknowledged",
    "dead_lettered": "Records sent to the dead-letter topic (invalid or rejected by InfluxDB)",
    "influx_rejected": "Points InfluxDB rejected (also dead-lettered)",
    "influx_retries": "Failed InfluxDB write attempts that were retried",
    "redis_retries": "Failed Redis publish attempts that were retried",
    "summaries": "Summaries published to Redis",
    "fenced": "Publishes refused because another replica had published the partition since (re-resumed from Redis)",
    "committed": "Records whose offsets were committed",
    "backpressure_pauses": "Times reading was paused because too many records were in flight",
    "read_again": "Records the InfluxDB path read from Kafka itself, behind the live path (after it detached, or a gap at start)",
    "detached": "Times the live path stopped handing lines to the InfluxDB path, which was too far behind",
}


@dataclass
class WorkerStats:
    """Counters and gauges of one worker process (plain numbers; cheap to update)."""

    worker: int
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    in_flight: dict[int, int] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)
    live_lag: dict[int, int] = field(default_factory=dict)
    ready: bool = False
    reason: str = "starting"
    paused: bool = False
    degraded: str | None = None  # some InfluxDB nodes left out, the others take the writes
    # InfluxDB node URL -> (1 if it takes requests else 0, requests it failed, writes it acknowledged)
    influx_nodes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    under_replicated: int = 0  # writes a cluster stored below the requested consistency
    sent_at: float = 0.0

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a counter."""
        self.counters[name] += amount

    def observe_latency(self, seconds: float) -> None:
        """Record one batch's consume-to-commit latency."""
        self.latency_sum += seconds
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[index] += 1
                return
        self.latency_buckets[-1] += 1

    def snapshot(self) -> dict:
        """A picklable copy for the HTTP process."""
        self.sent_at = time.time()
        return {
            "worker": self.worker,
            "counters": dict(self.counters),
            "latency_buckets": list(self.latency_buckets),
            "latency_sum": self.latency_sum,
            "in_flight": dict(self.in_flight),
            "lag": dict(self.lag),
            "live_lag": dict(self.live_lag),
            "ready": self.ready,
            "reason": self.reason,
            "paused": self.paused,
            "degraded": self.degraded,
            "influx_nodes": dict(self.influx_nodes),
            "under_replicated": self.under_replicated,
            "sent_at": self.sent_at,
        }


class WorkersCollector(Collector):
    """Exposes the latest snapshot of every worker; counters survive a worker's restart."""

    def __init__(self) -> None:
        self.latest: dict[int, dict] = {}
        self._carried: dict[int, dict[str, int]] = {}

    def update(self, snapshot: dict) -> None:
        """Take a worker's snapshot; a restarted worker's counters add to what it had counted."""
        worker = snapshot["worker"]
        previous = self.latest.get(worker)
        if previous and snapshot["counters"]["consumed"] < previous["counters"]["consumed"]:
            carried = self._carried.setdefault(worker, dict.fromkeys(COUNTERS, 0))
            for name in COUNTERS:
                carried[name] += previous["counters"][name]
        self.latest[worker] = snapshot

    def total(self, name: str) -> int:
        """Sum of a counter over all workers (with restarts carried)."""
        return sum(s["counters"][name] for s in self.latest.values()) + sum(
            c[name] for c in self._carried.values()
        )

    def collect(self) -> Iterator:
        for name, documentation in COUNTERS.items():
            family = CounterMetricFamily(f"smartgrid_ingest_{name}", documentation, labels=["worker"])
            for worker, snapshot in sorted(self.latest.items()):
                carried = self._carried.get(worker, {}).get(name, 0)
                family.add_metric([str(worker)], snapshot["counters"][name] + carried)
            yield family
        latency = HistogramMetricFamily(
            "smartgrid_ingest_batch_latency_seconds",
            "Time from consuming a batch to committing its offsets",
            labels=["worker"],
        )
        for worker, snapshot in sorted(self.latest.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), snapshot["latency_buckets"]):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            latency.add_metric([str(worker)], buckets, snapshot["latency_sum"])
        yield latency
        lag = GaugeMetricFamily("smartgrid_ingest_partition_lag", "Records behind the partition's end", labels=["partition"])
        in_flight = GaugeMetricFamily(
            "smartgrid_ingest_partition_in_flight", "Records consumed but not yet committed", labels=["partition"]
        )
        live_lag = GaugeMetricFamily(
            "smartgrid_ingest_partition_live_lag", "Records not yet summarised for the live view", labels=["partition"]
        )
        ready = GaugeMetricFamily("smartgrid_ingest_worker_ready", "1 when the worker is ready", labels=["worker"])
        paused = GaugeMetricFamily("smartgrid_ingest_worker_paused", "1 while fetching is paused", labels=["worker"])
        for worker, snapshot in sorted(self.latest.items()):
            for partition, value in sorted(snapshot["lag"].items()):
                lag.add_metric([str(partition)], value)
            for partition, value in sorted(snapshot.get("live_lag", {}).items()):
                live_lag.add_metric([str(partition)], value)
            for partition, value in sorted(snapshot["in_flight"].items()):
                in_flight.add_metric([str(partition)], value)
            ready.add_metric([str(worker)], 1 if snapshot["ready"] else 0)
            paused.add_metric([str(worker)], 1 if snapshot["paused"] else 0)
        yield from (lag, live_lag, in_flight, ready, paused)
        yield from self._influx_nodes()

    def _influx_nodes(self) -> Iterator:
        """Each worker's InfluxDB nodes, as the writer exports its own (smartgrid_common.influx.
        InfluxNodeMetrics), with the worker as a label."""
        up = GaugeMetricFamily("smartgrid_influxdb_node_up", "1 while the InfluxDB node takes requests, 0 while left out",
                               labels=["node", "worker"])
        failures = CounterMetricFamily("smartgrid_influxdb_node_failures", "Requests an InfluxDB node failed (unreachable, 5xx)",
                                       labels=["node", "worker"])
        writes = CounterMetricFamily("smartgrid_influxdb_node_writes", "Writes an InfluxDB node acknowledged", labels=["node", "worker"])
        under = CounterMetricFamily("smartgrid_influxdb_under_replicated_writes",
                                    "Writes an InfluxDB cluster stored below the requested consistency", labels=["worker"])
        for worker, snapshot in sorted(self.latest.items()):
            for node, (is_up, failed, written) in sorted(snapshot.get("influx_nodes", {}).items()):
                up.add_metric([node, str(worker)], is_up)
                failures.add_metric([node, str(worker)], failed)
                writes.add_metric([node, str(worker)], written)
            under.add_metric([str(worker)], snapshot.get("under_replicated", 0))
        yield from (up, failures, writes, under)
