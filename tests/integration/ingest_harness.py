"""Running the real ingest service in tests, against the stack started by `scripts/stack up`."""

from __future__ import annotations

import os
import signal
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BROKERS = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
INFLUX = os.environ.get("INFLUXDB_URL", "http://127.0.0.1:8086")
REDIS = os.environ.get("SMARTGRID_REDIS_URL", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(offsets: tuple[int, ...], low: int, high: int, step: int = 20) -> int:
    """A port P in [low, high) such that every P + offset is free (servers on fixed port offsets)."""
    for _ in range(500):
        port = random.randrange(low, high, step)
        if all(port_free(port + offset) for offset in offsets):
            return port
    raise RuntimeError(f"no free base port in [{low}, {high}) for offsets {offsets}")


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Names:
    """A unique topic (32 partitions), database, Redis prefix and group for one test."""

    def __init__(self, partitions: int = 32) -> None:
        tag = uuid.uuid4().hex[:8]
        self.topic = f"test-ingest-{tag}"
        self.dlq = f"{self.topic}.dlq"
        self.database = f"test_ingest_{tag}"
        self.prefix = f"test-ingest-{tag}"
        self.group = f"test-ingest-{tag}"
        self.admin = AdminClient({"bootstrap.servers": BROKERS})
        self.admin.create_topics([NewTopic(self.topic, num_partitions=partitions)])[self.topic].result(30)

    def cleanup(self) -> None:
        for future in self.admin.delete_topics([self.topic, self.dlq]).values():
            try:
                future.result(30)
            except Exception:  # noqa: BLE001 - the DLQ may not exist
                pass
        httpx.post(f"{INFLUX}/query", data={"q": f'DROP DATABASE "{self.database}"'}, timeout=10)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BROKERS": BROKERS,
            "KAFKA_TOPIC": self.topic,
            "KAFKA_GROUP_ID": self.group,
            "INFLUXDB_URL": INFLUX,
            "INFLUXDB_DATABASE": self.database,
            "SMARTGRID_REDIS_URL": REDIS,
            "SMARTGRID_REDIS_PREFIX": self.prefix,
            "INFLUXDB_BATCH_TIMEOUT": "200ms",
            "KAFKA_BATCH_TIMEOUT": "100ms",
            **extra,
        }


class IngestProcess:
    """`python -m ingest` as a real process tree (HTTP process + worker processes)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        full_env = {**os.environ, **env, "SMARTGRID_HTTP_PORT": str(self.port), "SMARTGRID_HTTP_HOST": "127.0.0.1"}
        self.handle = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest"], env=full_env, stdout=self.handle, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=REPO,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=3)
        except httpx.HTTPError:
            return None

    def totals(self) -> dict[str, int]:
        response = self.get("/stats")
        return response.json()["totals"] if response is not None else {}

    def ready(self) -> bool:
        response = self.get("/readyz")
        return response is not None and response.status_code == 200

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(self.ready, timeout, f"ingest ready (log: {self.log})")

    def wait_committed(self, count: int, timeout: float = 120) -> None:
        wait_until(lambda: self.totals().get("committed", 0) >= count, timeout, f"{count} records committed")

    def rss_mb(self) -> float:
        try:
            parent = psutil.Process(self.process.pid)
            return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20
        except psutil.NoSuchProcess:
            return 0.0

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM to the main process only, as Kubernetes does; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.handle.close()

    def kill9(self) -> None:
        """SIGKILL to the whole process tree, mid-whatever-it-was-doing."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.handle.close()

    def kill9_main(self) -> None:
        """SIGKILL to the main (HTTP + supervisor) process only, as the OOM killer does."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.handle.close()

    def descendants(self) -> list[psutil.Process]:
        """Every process the main process started (workers, multiprocessing's resource tracker)."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes (multiprocessing spawn children)."""
        pids = []
        for child in self.descendants():
            try:
                if child.status() != psutil.STATUS_ZOMBIE and any("spawn_main" in part for part in child.cmdline()):
                    pids.append(child.pid)
            except psutil.NoSuchProcess:
                continue
        return pids

    def stop(self) -> None:
        """SIGKILL to whatever is left of the process tree (also workers orphaned by a test)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        if not self.handle.closed:
            self.handle.close()


def influx_query(database: str, query: str) -> list[list]:
    response = httpx.get(f"{INFLUX}/query", params={"db": database, "q": query, "epoch": "ms"}, timeout=30)
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    series = result.get("series", [])
    return [row for s in series for row in s["values"]]


def influx_count(database: str) -> int:
    try:
        rows = influx_query(database, "SELECT count(consumption_kwh) FROM raw_data.energy_consumption")
    except (httpx.HTTPError, AssertionError):
        return -1
    return rows[0][1] if rows else 0


def committed_offsets(group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in offsets}
    finally:
        consumer.close()


def end_offsets(topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": "offsets-probe"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
    finally:
        consumer.close()


def read_topic(topic: str, expected: int, timeout: float = 60) -> list:
    """Every message of a topic (at least ``expected`` of them)."""
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    messages: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            messages.extend(m for m in consumer.consume(1000, 1.0) if m.error() is None)
        return messages
    finally:
        consumer.close()


def stack_command(*args: str) -> None:
    subprocess.run([str(REPO / "scripts" / "stack"), *args], check=True, cwd=REPO)
