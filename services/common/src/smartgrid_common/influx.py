"""InfluxDB 1.x client shared by the services that write: schema set-up, batched writes, retries.

A write either succeeds, or raises :class:`InfluxUnavailable` (server down, 5xx, auth, missing
database: worth retrying, never a reason to drop data), or comes back with the points InfluxDB
REJECTED (400/413). Rejected points are found by splitting the batch in halves until single lines
remain: re-sending accepted points is harmless because InfluxDB overwrites a point with the same
series and timestamp.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from .backoff import influx_backoff
from .contracts import AGGREGATE_RETENTION, RAW_RETENTION
from .settings import InfluxSettings

log = logging.getLogger(__name__)


class InfluxUnavailable(Exception):
    """InfluxDB did not accept the write for a reason that retrying can fix."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line InfluxDB refused, with its index in the body and InfluxDB's reason."""

    index: int
    reason: str


def split_lines(body: bytes) -> list[bytes]:
    """The lines of a line-protocol body (each without its newline)."""
    return body.rstrip(b"\n").split(b"\n") if body else []


class InfluxClient:
    """Talks to one InfluxDB 1.x HTTP endpoint; safe to share between threads."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.url = settings.influxdb_url.rstrip("/")
        self.database = settings.influxdb_database
        auth = None
        if settings.influxdb_username:
            auth = (settings.influxdb_username, settings.influxdb_password.get_secret_value())
        self._http = httpx.Client(
            base_url=self.url,
            auth=auth,
            timeout=settings.influxdb_timeout,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def ping(self) -> bool:
        """True when InfluxDB answers /ping."""
        try:
            return self._http.get("/ping", timeout=2.0).status_code == 204
        except httpx.HTTPError:
            return False

    def query(self, statement: str, database: str | None = None, method: str = "GET") -> list[dict]:
        """Run InfluxQL; returns the ``results`` list. Raises InfluxUnavailable on failure."""
        params = {"q": statement, "epoch": "ms"}
        if database or self.database:
            params["db"] = database or self.database
        try:
            if method == "POST":
                response = self._http.post("/query", data=params)
            else:
                response = self._http.get("/query", params=params)
        except httpx.HTTPError as error:
            raise InfluxUnavailable(f"InfluxDB at {self.url} unreachable: {error}") from error
        if response.status_code != 200:
            raise InfluxUnavailable(f"query failed ({response.status_code}): {response.text[:300]}")
        results = response.json().get("results", [])
        for result in results:
            if "error" in result:
                raise InfluxUnavailable(f"query failed: {result['error']}")
        return results

    def ensure_schema(self) -> None:
        """Create the database and both retention policies, idempotently (ALTER when present)."""
        settings = self.settings
        database = self.database
        self.query(f'CREATE DATABASE "{database}"', method="POST")
        existing = {
            row[0]
            for result in self.query(f'SHOW RETENTION POLICIES ON "{database}"')
            for series in result.get("series", [])
            for row in series.get("values", [])
        }
        for name, duration, default in (
            (settings.influxdb_retention_policy, RAW_RETENTION, True),
            (settings.influxdb_aggregate_retention_policy, AGGREGATE_RETENTION, False),
        ):
            verb = "ALTER" if name in existing else "CREATE"
            replication = "" if verb == "ALTER" else " REPLICATION 1"
            statement = f'{verb} RETENTION POLICY "{name}" ON "{database}" DURATION {duration}{replication}'
            self.query(statement + (" DEFAULT" if default else ""), method="POST")

    def _post(self, body: bytes, retention_policy: str, precision: str) -> httpx.Response:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.settings.influxdb_gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.database, "rp": retention_policy, "precision": precision}
        try:
            return self._http.post("/write", params=params, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise InfluxUnavailable(f"InfluxDB at {self.url} unreachable: {error}") from error

    def write(self, body: bytes, retention_policy: str, precision: str = "ms") -> list[Rejected]:
        """Write a line-protocol body; returns the lines InfluxDB rejected (empty: all written)."""
        if not body:
            return []
        response = self._post(body, retention_policy, precision)
        if response.status_code == 204:
            return []
        if response.status_code not in (400, 413):
            raise InfluxUnavailable(f"write failed ({response.status_code}): {response.text[:300]}")
        return self._bisect(split_lines(body), 0, retention_policy, precision, response)

    def _bisect(
        self, lines: list[bytes], start: int, retention_policy: str, precision: str, response: httpx.Response
    ) -> list[Rejected]:
        if len(lines) == 1:
            return [Rejected(start, _reason(response))]
        middle = len(lines) // 2
        rejected: list[Rejected] = []
        for part, offset in ((lines[:middle], start), (lines[middle:], start + middle)):
            answer = self._post(b"\n".join(part) + b"\n", retention_policy, precision)
            if answer.status_code == 204:
                continue
            if answer.status_code not in (400, 413):
                raise InfluxUnavailable(f"write failed ({answer.status_code}): {answer.text[:300]}")
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
        not-ready after ``INFLUXDB_MAX_RETRIES``).
        """
        backoff = influx_backoff(self.settings)  # one per call: concurrent writes back off apart
        while True:
            try:
                return self.write(body, retention_policy, precision)
            except InfluxUnavailable as error:
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


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))[:500]
    except ValueError:
        return response.text[:500]


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()
