"""InfluxDB 1.x client shared by the services that write: schema set-up, batched writes, retries.

One node or the data nodes of a cluster (InfluxDB Enterprise, InfluxDB Cluster): ``INFLUXDB_URL``
lists them, comma-separated. Writes go to the nodes in turn; a node that refuses the connection or
answers 5xx is left out for a while (its own backoff: ``INFLUXDB_RETRY_INTERVAL`` doubling to
30 s) and its share goes to the others within the same attempt. Only when every node fails does a
write raise :class:`InfluxUnavailable`.

A write either succeeds, or raises :class:`InfluxUnavailable` (server down, 5xx, auth, missing
database: worth retrying, never a reason to drop data), or comes back with the points InfluxDB
REJECTED: a 400/413 from one node, or a cluster's 500 ``partial write: ... dropped=N`` (a field
type conflict there). Rejected points are found by splitting the batch in halves until single
lines remain: re-sending accepted points is harmless because InfluxDB overwrites a point with the
same series and timestamp. A refusal's ``dropped=N`` is checked against the lines found: answers
that account for fewer (a cluster's 204 for a part it stored nothing of) are bisected again, then
raise InfluxUnavailable; a refused point is never taken for a written one.

A cluster's bare 500 ``partial write`` means "stored, but not on as many replicas as the write
consistency asks" (a data node is down; hinted handoff delivers the rest when it is back). With
``any``/``one`` it is a success. With ``quorum``/``all`` it is retried like an unavailable
InfluxDB (backoff, ``on_retry``) up to ``INFLUXDB_MAX_RETRIES`` times, then accepted as stored:
it is counted (``under_replicated``) and logged, never retried forever nor dropped.

URLs are shown (logs, errors, /readyz) without their userinfo.
"""

from __future__ import annotations

import gzip
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from .backoff import Backoff, influx_backoff
from .contracts import AGGREGATE_RETENTION, RAW_RETENTION
from .settings import InfluxSettings, parse_influx_urls, redact_urls

log = logging.getLogger(__name__)


class InfluxUnavailable(Exception):
    """InfluxDB did not accept the write for a reason that retrying can fix."""


class UnderReplicated(InfluxUnavailable):
    """A cluster stored the points, but on fewer replicas than the write consistency asks."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line InfluxDB refused, with its index in the body and InfluxDB's reason."""

    index: int
    reason: str


def split_lines(body: bytes) -> list[bytes]:
    """The lines of a line-protocol body (each without its newline)."""
    return body.rstrip(b"\n").split(b"\n") if body else []


@dataclass(eq=False)
class Node:
    """One InfluxDB HTTP endpoint (a data node of a cluster) and its circuit breaker."""

    url: str  # without userinfo: the only form ever shown
    http: httpx.Client
    backoff: Backoff
    out_until: float = 0.0  # monotonic time before which the node is skipped
    reason: str = ""  # why it is out
    failures: int = 0  # requests that failed (connection refused, timeout, 5xx)
    writes: int = 0  # write requests it acknowledged
    lock: threading.Lock = field(default_factory=threading.Lock)

    def is_out(self, now: float) -> bool:
        return now < self.out_until


# A cluster answers 500 where one node answers 400. Seen from InfluxDB Cluster 1.8.11-c1.2.0:
#   "write failed: partial write: field type conflict: ... dropped=1"   (the others were stored)
#   "write failed: error code 1: write shard 2: partial write: ... dropped=1"   (via another node)
#   "write failed: field type conflict"   (a new shard, the batch conflicts in itself: none stored)
#   "partial write"   (stored on fewer replicas than the consistency asks: a data node is down)
# The first three are refusals of points (found by bisection), the last is not about the points.
def _partial_write(response: httpx.Response) -> str | None:
    """``"refused"``, ``"under-replicated"`` or None for a 5xx that is neither (a node problem)."""
    if response.status_code < 500:
        return None
    reason = _reason(response)
    if "dropped=" in reason or "field type conflict" in reason:
        return "refused"
    if reason.strip() == "partial write":
        return "under-replicated"
    return None


def _dropped(response: httpx.Response) -> int:
    """The ``dropped=N`` of a refusal (0 without one): at least N of its points were refused."""
    counts = _DROPPED.findall(response.text)
    return int(counts[-1]) if counts else 0


def _results(response: httpx.Response) -> list[dict]:
    """The ``results`` of a /query answer; raises InfluxUnavailable for an error in it."""
    if response.status_code != 200:
        raise InfluxUnavailable(f"query failed ({response.status_code}): {redact_urls(response.text[:300])}")
    results = response.json().get("results", [])
    for result in results:
        if "error" in result:
            raise InfluxUnavailable(f"query failed: {result['error']}")
    return results


_DROPPED = re.compile(r"dropped=(\d+)")

# Times a refused body is bisected again when the answers to its halves contradict the refusal.
BISECT_ATTEMPTS = 3

# Seconds a created database or policy may take to reach every data node of a cluster.
SCHEMA_PROPAGATION = 10.0


class InfluxClient:
    """Talks to one InfluxDB 1.x endpoint or to the data nodes of a cluster; thread-safe."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.database = settings.influxdb_database
        self.consistency = settings.influxdb_consistency
        self.under_replicated = 0  # writes accepted below the requested consistency
        # Requests that may still take effect later: a node got them and did not answer in time,
        # or answered 5xx (a cluster's data node holds a write while it waits for the meta node or
        # a replica, and stores it when it can), or stored them on fewer replicas (hinted handoff
        # delivers the rest later). Such a write can land after a newer write of the same point,
        # and InfluxDB keeps the last one: a caller that overwrites points compares this count
        # around its writes and has them written again later (the writer has the aggregator emit
        # their seconds again).
        self.unsettled = 0
        self.nodes: list[Node] = []
        for url, userinfo in parse_influx_urls(settings.influxdb_url):
            auth = userinfo
            if settings.influxdb_username:
                auth = (settings.influxdb_username, settings.influxdb_password.get_secret_value())
            http = httpx.Client(
                base_url=url,
                auth=auth,
                timeout=settings.influxdb_timeout,
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
            )
            self.nodes.append(Node(url, http, influx_backoff(settings)))
        self.url = ",".join(node.url for node in self.nodes)
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection pools."""
        for node in self.nodes:
            node.http.close()

    # ---- the nodes ----------------------------------------------------------------------------

    def _candidates(self) -> Iterator[Node]:
        """The nodes to try for one request: those not out, starting at the next in turn (writes
        are spread); when every node is out, the one whose pause ends first (a probe)."""
        now = time.monotonic()
        start = next(self._turn) % len(self.nodes)
        ordered = self.nodes[start:] + self.nodes[:start]
        usable = [node for node in ordered if not node.is_out(now)]
        if not usable:
            usable = [min(self.nodes, key=lambda node: node.out_until)]
        return iter(usable)

    def _failed(self, node: Node, reason: str) -> None:
        with node.lock:
            node.failures += 1
            delay = node.backoff.next()
            node.out_until = time.monotonic() + delay
            node.reason = reason
        if len(self.nodes) > 1:
            log.warning(
                "influxdb node left out",
                extra={"node": node.url, "reason": reason, "retry_in_s": delay, "attempt": node.backoff.attempts},
            )

    def _succeeded(self, node: Node) -> None:
        if node.out_until or node.backoff.attempts:
            with node.lock:
                was_out = bool(node.reason)
                node.out_until, node.reason = 0.0, ""
                node.backoff.reset()
            if was_out and len(self.nodes) > 1:
                log.info("influxdb node back", extra={"node": node.url})

    def _request(self, send: Callable[[httpx.Client], httpx.Response]) -> tuple[Node, httpx.Response]:
        """Send to the next usable node; on a refused connection or a 5xx that is not about the
        points, leave that node out and try the next. Raises InfluxUnavailable when none answers."""
        problems = []
        for node in self._candidates():
            try:
                response = send(node.http)
            except httpx.HTTPError as error:
                reason = f"unreachable: {redact_urls(str(error)) or type(error).__name__}"
                if not isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)):
                    self._unsettled()  # sent: the node may act on it after this timeout
            else:
                partial = _partial_write(response)
                if partial == "under-replicated":
                    self._unsettled()  # hinted handoff delivers it to the other replicas later
                if response.status_code < 500 or partial is not None:
                    self._succeeded(node)
                    return node, response
                reason = f"answered {response.status_code}: {redact_urls(response.text[:300])}"
                self._unsettled()  # e.g. a cluster's "timeout": the write may still be stored
            self._failed(node, reason)
            problems.append(f"InfluxDB at {node.url} {reason}")
        raise InfluxUnavailable("; ".join(problems))

    def _unsettled(self) -> None:
        with self._lock:
            self.unsettled += 1

    def nodes_out(self) -> list[tuple[str, str]]:
        """(URL, reason) of every node currently left out."""
        now = time.monotonic()
        return [(node.url, node.reason) for node in self.nodes if node.is_out(now)]

    def degraded(self) -> str | None:
        """A sentence for /readyz when some nodes are out but others take the writes, else None."""
        out = self.nodes_out()
        if not out or len(out) == len(self.nodes):
            return None
        listed = "; ".join(f"{url} ({reason})" for url, reason in out)
        return f"degraded: {len(out)} of {len(self.nodes)} InfluxDB nodes left out: {listed}"

    # ---- queries and schema -------------------------------------------------------------------

    def ping(self) -> bool:
        """True when some node answers /ping."""
        try:
            return self._request(lambda http: http.get("/ping", timeout=2.0))[1].status_code == 204
        except InfluxUnavailable:
            return False

    def query(self, statement: str, database: str | None = None, method: str = "GET") -> list[dict]:
        """Run InfluxQL; returns the ``results`` list. Raises InfluxUnavailable on failure."""
        params = {"q": statement, "epoch": "ms"}
        if database or self.database:
            params["db"] = database or self.database
        if method == "POST":
            _, response = self._request(lambda http: http.post("/query", data=params))
        else:
            _, response = self._request(lambda http: http.get("/query", params=params))
        return _results(response)

    def ensure_schema(self) -> None:
        """Create the database and both retention policies, idempotently (ALTER when present).

        ``SMARTGRID_INFLUXDB_REPLICATION`` is the replication of a policy this creates; an existing
        policy keeps its own (an ALTER sets only the duration and the default), so a service
        started with the default 1 never lowers a cluster's replication.

        A cluster's data nodes learn the schema from the meta node a moment after it is created,
        and requests go to the nodes in turn: each step waits until every reachable node knows what
        the previous one created (bounded by ``SCHEMA_PROPAGATION``), so neither this nor the first
        writes meet a node that answers ``database not found``."""
        settings = self.settings
        policies = (
            (settings.influxdb_retention_policy, RAW_RETENTION, True),
            (settings.influxdb_aggregate_retention_policy, AGGREGATE_RETENTION, False),
        )
        self.query(f'CREATE DATABASE "{self.database}"', method="POST")
        existing = self._until_every_node_knows(set())
        for name, duration, default in policies:
            verb = "ALTER" if name in existing else "CREATE"
            replication = "" if verb == "ALTER" else f" REPLICATION {settings.influxdb_replication}"
            statement = f'{verb} RETENTION POLICY "{name}" ON "{self.database}" DURATION {duration}{replication}'
            self.query(statement + (" DEFAULT" if default else ""), method="POST")
        self._until_every_node_knows({name for name, _, _ in policies})

    def _until_every_node_knows(self, policies: set[str]) -> set[str]:
        """Wait until every node that answers knows the database and ``policies``; returns the
        policies the database has. A node that does not answer is not waited for (it learns the
        schema from the meta node when it is back). Raises InfluxUnavailable after
        ``SCHEMA_PROPAGATION`` seconds, naming the nodes that lag."""
        deadline = time.monotonic() + SCHEMA_PROPAGATION
        statement = f'SHOW RETENTION POLICIES ON "{self.database}"'
        while True:
            known: set[str] = set()
            lagging = []
            for node in self.nodes:
                try:
                    results = _results(node.http.get("/query", params={"q": statement}))
                except httpx.HTTPError:
                    continue
                except InfluxUnavailable as error:  # "database not found" on a node that lags
                    lagging.append(f"{node.url} ({error})")
                    continue
                names = {row[0] for result in results for series in result.get("series", [])
                         for row in series.get("values", [])}
                if not policies <= names:
                    lagging.append(f"{node.url} (has {sorted(names)})")
                known |= names
            if not lagging:
                return known
            if time.monotonic() > deadline:
                raise InfluxUnavailable(
                    f"the schema of {self.database} has not reached every InfluxDB node after "
                    f"{SCHEMA_PROPAGATION:.0f} s: {'; '.join(lagging)}"
                )
            time.sleep(0.1)

    # ---- writes -------------------------------------------------------------------------------

    def _post(self, body: bytes, retention_policy: str, precision: str) -> tuple[Node, httpx.Response]:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.settings.influxdb_gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.database, "rp": retention_policy, "precision": precision, "consistency": self.consistency}
        node, response = self._request(lambda http: http.post("/write", params=params, content=body, headers=headers))
        if response.status_code == 204:
            with node.lock:
                node.writes += 1
        return node, response

    def write(self, body: bytes, retention_policy: str, precision: str = "ms") -> list[Rejected]:
        """Write a line-protocol body; returns the lines InfluxDB rejected (empty: all written).

        Raises :class:`UnderReplicated` when a cluster stored the body below a ``quorum``/``all``
        consistency (``write_until_done`` decides how long to insist).
        """
        if not body:
            return []
        node, response = self._post(body, retention_policy, precision)
        if response.status_code == 204:
            return []
        partial = _partial_write(response)
        if partial == "under-replicated":
            return self._under_replicated(node, response)
        if response.status_code not in (400, 413) and partial != "refused":
            raise InfluxUnavailable(f"write to {node.url} failed ({response.status_code}): {redact_urls(response.text[:300])}")
        return self._bisect(split_lines(body), 0, retention_policy, precision, response)

    def _under_replicated(self, node: Node, response: httpx.Response) -> list[Rejected]:
        if self.consistency in ("any", "one"):
            self._count_under_replicated(node, response, retried=0)
            return []
        raise UnderReplicated(
            f"write to {node.url} stored below consistency {self.consistency} (a data node is down?): {_reason(response)}"
        )

    def _count_under_replicated(self, node: Node, response: httpx.Response | str, retried: int) -> None:
        with self._lock:
            self.under_replicated += 1
            count = self.under_replicated
        if count == 1 or count % 100 == 0:
            reason = response if isinstance(response, str) else _reason(response)
            log.warning(
                "influxdb stored a write below the requested consistency; hinted handoff completes it",
                extra={"node": node.url if node else None, "consistency": self.consistency, "reason": reason,
                       "retried": retried, "under_replicated_writes": count},
            )

    def _bisect(
        self, lines: list[bytes], start: int, retention_policy: str, precision: str, response: httpx.Response
    ) -> list[Rejected]:
        """The lines of a refused body that InfluxDB refuses, found by writing its halves.

        The refusal's ``dropped=N`` is a lower bound of the lines refused in it (one shard's count,
        or the points beyond the retention). A cluster asked for consistency ``one`` was seen to
        answer 204 for a part holding a point that both replicas refuse, and store nothing: the
        halves then account for fewer than N lines. Such a body is bisected again, up to
        ``BISECT_ATTEMPTS`` times, then raises InfluxUnavailable (the caller retries it whole):
        a point InfluxDB refuses always reaches the dead-letter topic, never vanishes."""
        if len(lines) == 1:
            return [Rejected(start, _reason(response))]
        refused_at_least = _dropped(response)
        for attempt in range(1, BISECT_ATTEMPTS + 1):
            rejected = self._bisect_halves(lines, start, retention_policy, precision)
            if len(rejected) >= refused_at_least:
                return rejected
            log.warning(
                "influxdb's answers contradict: the halves of a refused body were accepted; bisecting again",
                extra={"lines": len(lines), "refused_at_least": refused_at_least, "found": len(rejected),
                       "attempt": attempt, "reason": _reason(response)},
            )
        raise InfluxUnavailable(
            f"InfluxDB refused {refused_at_least} of {len(lines)} points but accepted the parts holding them "
            f"{BISECT_ATTEMPTS} times: {_reason(response)}"
        )

    def _bisect_halves(self, lines: list[bytes], start: int, retention_policy: str, precision: str) -> list[Rejected]:
        middle = len(lines) // 2
        rejected: list[Rejected] = []
        for part, offset in ((lines[:middle], start), (lines[middle:], start + middle)):
            node, answer = self._post(b"\n".join(part) + b"\n", retention_policy, precision)
            if answer.status_code == 204:
                continue
            partial = _partial_write(answer)
            if partial == "under-replicated":  # stored: nothing in this part was refused
                self._count_under_replicated(node, answer, retried=0)
                continue
            if answer.status_code not in (400, 413) and partial != "refused":
                raise InfluxUnavailable(f"write to {node.url} failed ({answer.status_code}): {redact_urls(answer.text[:300])}")
            rejected.extend(self._bisect(part, offset, retention_policy, precision, answer))
        return rejected

    def write_until_done(
        self,
        body: bytes,
        retention_policy: str,
        stop: threading.Event,
        precision: str = "ms",
        on_retry: Callable[[int, Exception], None] | None = None,
    ) -> list[Rejected] | None:
        """Write, retrying with exponential backoff while InfluxDB is unavailable.

        Returns the rejected lines, or None if ``stop`` was set before the write succeeded.
        ``on_retry(attempt, error)`` is called before each wait (callers count retries and turn
        not-ready after ``INFLUXDB_MAX_RETRIES``). A write stored below a ``quorum``/``all``
        consistency is retried the same way ``INFLUXDB_MAX_RETRIES`` times, then accepted.
        """
        backoff = influx_backoff(self.settings)  # one per call: concurrent writes back off apart
        while True:
            try:
                return self.write(body, retention_policy, precision)
            except InfluxUnavailable as error:
                if isinstance(error, UnderReplicated) and backoff.attempts >= self.settings.influxdb_max_retries:
                    self._count_under_replicated(None, str(error), retried=backoff.attempts)
                    return []
                delay = backoff.next()
                attempt = backoff.attempts
                if on_retry:
                    on_retry(attempt, error)
                if attempt == 1 or attempt % 10 == 0:
                    log.warning(
                        "influxdb write failed, retrying",
                        extra={"attempt": attempt, "error": str(error), "retry_in_s": delay},
                    )
                if stop.wait(delay):
                    return None


class InfluxNodeMetrics:
    """A Prometheus collector of a client's nodes (register it: ``registry.register(...)``).

    ``smartgrid_influxdb_node_up{node}`` 1 while the node takes requests, 0 while it is left out;
    ``smartgrid_influxdb_node_failures_total{node}`` requests it failed;
    ``smartgrid_influxdb_node_writes_total{node}`` writes it acknowledged (how writes are spread);
    ``smartgrid_influxdb_under_replicated_writes_total`` writes stored below the consistency asked.
    """

    def __init__(self, client: InfluxClient) -> None:
        self.client = client

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        now = time.monotonic()
        up = GaugeMetricFamily("smartgrid_influxdb_node_up", "1 while the InfluxDB node takes requests, 0 while left out", labels=["node"])
        failures = CounterMetricFamily("smartgrid_influxdb_node_failures", "Requests an InfluxDB node failed (unreachable, 5xx)", labels=["node"])
        writes = CounterMetricFamily("smartgrid_influxdb_node_writes", "Writes an InfluxDB node acknowledged", labels=["node"])
        for node in self.client.nodes:
            up.add_metric([node.url], 0.0 if node.is_out(now) else 1.0)
            failures.add_metric([node.url], node.failures)
            writes.add_metric([node.url], node.writes)
        under = CounterMetricFamily(
            "smartgrid_influxdb_under_replicated_writes",
            "Writes an InfluxDB cluster stored below the requested consistency (hinted handoff completes them)",
            value=self.client.under_replicated,
        )
        return [up, failures, writes, under]


def _reason(response: httpx.Response) -> str:
    try:
        return redact_urls(str(response.json().get("error", response.text)))[:500]
    except ValueError:
        return redact_urls(response.text)[:500]


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()
