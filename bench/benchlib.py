"""Shared by the benchmarks that measure whole processes: the stack's servers, CPU per process group.

- :func:`listener` finds the process that listens on a port (the local stack's Kafka broker JVM,
  influxd and redis-server: the machine may run other stacks, so a name is not enough);
- :class:`CpuAccount` reads user + system CPU seconds of named process groups from /proc
  (psutil), each group a list of root processes and, optionally, their descendants; it samples in
  the background so that a process that exits (a restarted worker) keeps the CPU it used;
- :func:`box_busy_seconds` is the whole machine's busy CPU time, to show what else ran;
- :func:`thread_times` reads each thread's CPU time and wake-ups, :func:`thread_rows` the
  difference between two readings, per thread (ingest names its threads in the OS);
- :func:`start_simulator` runs the meter simulator as a process of its own (the load generator,
  whose CPU is then counted apart from the system under test).

Service start-up, topics and clean-up come from ``tests/integration/ingest_harness.py``,
``aggregator.testing`` and ``bench_ingest.py``; this module holds only what they lack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlparse

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
"""Where every benchmark writes its JSON results and logs (git-ignored)."""


def listener(port: int) -> psutil.Process | None:
    """The process listening on TCP ``port`` on this machine, or None."""
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port and connection.pid:
            return psutil.Process(connection.pid)
    return None


class PortProcess:
    """The process listening on a port, found again when it has been restarted (other work on a
    shared machine restarts the stack's servers); calling it gives ``[process]`` or ``[]``."""

    def __init__(self, role: str, port: int) -> None:
        self.role, self.port = role, port
        self.process = listener(port)
        if self.process is None:
            raise RuntimeError(f"nothing listens on port {port} ({role}): is the stack up? (scripts/stack up)")

    def __call__(self) -> list[psutil.Process]:
        if not self.process.is_running():
            self.process = listener(self.port) or self.process
        return [self.process] if self.process.is_running() else []


def stack_servers(brokers: str, influxdb: str, redis: str) -> dict[str, PortProcess]:
    """The local stack's server processes, by role: ``kafka broker (JVM)``, ``influxd``, ``redis-server``.

    Found by the port of each endpoint (first broker of ``brokers``); raises when one is missing.
    """
    ports = {
        "kafka broker (JVM)": int(brokers.split(",")[0].rsplit(":", 1)[1]),
        "influxd": urlparse(influxdb).port or 8086,
        "redis-server": urlparse(redis).port or 6379,
    }
    return {role: PortProcess(role, port) for role, port in ports.items()}


def go_gc(server: PortProcess) -> str:
    """The garbage collector settings a Go server (influxd) runs with, from its environment:
    ``GOGC=200 GOMEMLIMIT=2GiB`` (scripts/stack's), or Go's defaults. Its CPU per point depends on
    them (docs/capacity.md, "influxd's garbage collector")."""
    processes = server()
    try:
        environ = processes[0].environ() if processes else {}
    except psutil.Error:
        return "GC settings unknown"
    settings = [f"{name}={environ[name]}" for name in ("GOGC", "GOMEMLIMIT") if name in environ]
    return " ".join(settings) or "Go's default GC (GOGC=100)"


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of ``process`` so far."""
    times = process.cpu_times()
    return times.user + times.system


class CpuAccount(threading.Thread):
    """CPU seconds (user + system) of named groups of processes, sampled every ``interval`` s.

    ``groups`` maps a name to a callable returning the group's root processes (re-evaluated at each
    sample, so a process started later is picked up) and whether their descendants count too.
    Each process is keyed by (pid, create time) and keeps the last CPU time it was seen with, so
    a process that exits between samples loses at most one interval of CPU.
    """

    def __init__(self, groups: dict[str, tuple[Callable[[], Iterable[psutil.Process]], bool]], interval: float = 0.5) -> None:
        super().__init__(daemon=True, name="cpu-account")
        self.groups = groups
        self.interval = interval
        self.seen: dict[str, dict[tuple[int, float], float]] = {name: {} for name in groups}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def sample(self) -> None:
        for name, (roots, descendants) in self.groups.items():
            for root in list(roots()):
                try:
                    members = [root, *root.children(recursive=True)] if descendants else [root]
                except psutil.NoSuchProcess:
                    continue
                for process in members:
                    try:
                        key = (process.pid, process.create_time())
                        value = cpu_seconds(process)
                    except psutil.Error:
                        continue
                    with self.lock:
                        self.seen[name][key] = value

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample()

    def snapshot(self) -> dict[str, float]:
        """CPU seconds of each group so far (a fresh sample first)."""
        self.sample()
        with self.lock:
            return {name: sum(values.values()) for name, values in self.seen.items()}

    def processes(self, name: str) -> int:
        """How many distinct processes of group ``name`` were seen."""
        with self.lock:
            return len(self.seen[name])

    def close(self) -> None:
        self.stop.set()
        if self.is_alive():
            self.join(5)


TICK = os.sysconf("SC_CLK_TCK")


def thread_times(pids: Iterable[int]) -> dict[tuple[int, int], tuple[str, float, int]]:
    """(pid, tid) -> (thread name, CPU seconds, voluntary context switches: its wake-ups), from /proc."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            try:
                stat = Path(f"{base}/stat").read_text().rsplit(")", 1)[1].split()
                name = Path(f"{base}/comm").read_text().strip()
                status = Path(f"{base}/status").read_text()
            except OSError:
                continue
            switches = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
            out[(pid, int(tid))] = (name, (int(stat[11]) + int(stat[12])) / TICK, switches)
    return out


def thread_rows(before: dict, after: dict, pids: Iterable[int]) -> list[tuple[str, int, int, float, int]]:
    """Threads of ``pids`` seen in both readings of :func:`thread_times`: (name, pid, tid, CPU
    seconds, wake-ups) between them, the busiest first."""
    pids = set(pids)
    rows = [(name, key[0], key[1], cpu - before[key][1], switches - before[key][2])
            for key, (name, cpu, switches) in after.items() if key[0] in pids and key in before]
    return sorted(rows, key=lambda row: -row[3])


def box_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (every CPU, every process; not idle or iowait)."""
    times = psutil.cpu_times()
    return sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq", "steal"))


def start_simulator(brokers: str, topic: str, rate: float, meters: int, duration_s: float, log: Path,
                    seed: int = 0) -> subprocess.Popen:
    """``python -m simulator`` producing to ``topic`` at ``rate`` readings/s (0: flat out) for
    ``duration_s`` s, event time = now, RFC 3339 timestamps; output to ``log``."""
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", "--brokers", brokers, "--topic", topic, "--rate", str(rate),
         "--meters", str(meters), "--duration", f"{duration_s:.0f}s", "--seed", str(seed)],
        cwd=ROOT, env={**os.environ, "SMARTGRID_LOG_LEVEL": "WARNING"}, stdout=handle, stderr=subprocess.STDOUT,
    )


def stop_process(process: subprocess.Popen | None, timeout: float = 60.0) -> None:
    """SIGTERM (a service's graceful stop), then SIGKILL if it has not ended within ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def save_results(kind: str, stamp: str, result: dict) -> Path:
    """Write a benchmark's results to ``bench/results/<kind>-<stamp>.json`` and say where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{kind}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"results: {path}")
    return path
