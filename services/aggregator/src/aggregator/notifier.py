"""Region status gauges and alert notifications, the I/O part (``alerts.py`` decides).

Every replica reads each region's status counts once per ``SMARTGRID_REGION_STATUS_INTERVAL`` and
serves them as ``smartgrid_region_meters{region,status}`` and ``smartgrid_region_meters_share``.

With ``SMARTGRID_ALERT_WEBHOOK_URL`` set, ONE replica, the holder of a Redis lease
(``<prefix>:agg:alert_leader``, renewed every interval, lost after ``LEASE_INTERVALS`` missed
renewals), evaluates the alerts. The episodes live in Redis (``alert_episodes``), so a restart or a
new leader carries on without sending anything twice; a transition and its notification are stored
in one script that first checks the lease, so a replica that lost it changes nothing. Notifications
wait in an outbox list (``alert_outbox``) until the webhook took them (2xx): a webhook that is down
is retried with the project's backoff, on a task of its own, so neither the fold nor the
evaluation waits for it. A notification posted just before the leader died may be posted again by
the next one (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Coroutine, Iterator
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from smartgrid_common.backoff import Backoff, redis_backoff

from aggregator import alerts
from aggregator.alerts import ALERT_STATUSES, GAUGE_STATUSES, Episode, Key, Message, RegionCounts, Rule
from aggregator.keys import Keys
from aggregator.settings import AggregatorSettings
from aggregator.store import LiveStore

log = logging.getLogger("aggregator.notifier")

LEASE_INTERVALS = 3
"""The alert lease lasts this many evaluation intervals (at least ``LEASE_MIN_S``): a leader that
stopped renewing it is replaced after that long."""
LEASE_MIN_S = 5.0
WEBHOOK_FIRST_DELAY = 1.0
"""First retry delay of a failed webhook post; doubles up to ``WEBHOOK_MAX_DELAY``."""
WEBHOOK_MAX_DELAY = 60.0

# KEYS: lease; ARGV: owner, ttl ms. Take the lease if free, renew it if ours; 1 if ours.
_LEAD = """
local held = redis.call('GET', KEYS[1])
if not held then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if held == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
# KEYS: lease, episodes, outbox; ARGV: owner, then (field, episode JSON or '' to delete, body or '')
# triples. Applied only while the lease is ours.
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 3 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[2], ARGV[i]) else redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
  if ARGV[i + 2] ~= '' then redis.call('RPUSH', KEYS[3], ARGV[i + 2]) end
end
return 1
"""
# KEYS: lease, outbox; ARGV: owner, body. Drop the delivered head of the outbox.
_DELIVERED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('LINDEX', KEYS[2], 0) == ARGV[2] then redis.call('LPOP', KEYS[2]) return 1 end
return 0
"""
# KEYS: lease; ARGV: owner. Give the lease up (stopping): another replica takes over at once.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def webhook_target(url: str) -> str:
    """What logs may say about a webhook: scheme, host and port (a path or userinfo may hold a token)."""
    parsed = urllib.parse.urlsplit(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.hostname}{port}"


class RegionStatusCollector(Collector):
    """The region gauges from the latest counts (and the alerts firing on this replica)."""

    def __init__(self) -> None:
        self.counts: RegionCounts = {}
        self.firing: set[Key] = set()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        meters = GaugeMetricFamily(
            "smartgrid_region_meters", "Meters of a region by effective status (other: a status the product does not know)",
            labels=["region", "status"],
        )
        shares = GaugeMetricFamily(
            "smartgrid_region_meters_share", "Share (0..1) of a region's meters in a status", labels=["region", "status"]
        )
        firing = GaugeMetricFamily(
            "smartgrid_region_alert_firing",
            "1 while a region alert is firing (exported by the replica that sends the alerts)",
            labels=["region", "status"],
        )
        for region, row in sorted(self.counts.items()):
            for status in GAUGE_STATUSES:
                meters.add_metric([region, status], row.get(status, 0))
                shares.add_metric([region, status], alerts.share(row, status))
        for status, region in sorted(self.firing):
            firing.add_metric([region, status], 1)
        yield from (meters, shares, firing)


class RegionWatch:
    """Refreshes the region gauges and, if a webhook is set, leads, evaluates and notifies."""

    def __init__(self, redis: Redis, store: LiveStore, settings: AggregatorSettings, registry: CollectorRegistry,
                 collector: RegionStatusCollector) -> None:
        self.redis = redis
        self.store = store
        self.settings = settings
        self.collector = collector
        self.keys = Keys(settings.redis_prefix)
        self.owner = settings.consumer
        self.url = settings.alert_webhook_url.get_secret_value()
        self.enabled = bool(self.url)
        self.target = webhook_target(self.url) if self.enabled else ""
        ratio = settings.alert_clear_ratio
        self.rules = [Rule(status, share, share * ratio) for status, share in settings.alert_thresholds().items()]
        self.thresholds = settings.alert_thresholds()
        self.lease_ms = int(max(LEASE_MIN_S, LEASE_INTERVALS * settings.region_status_interval) * 1000)
        self.leader = False
        self.stopping = asyncio.Event()
        self.queued = asyncio.Event()
        self._lead = redis.register_script(_LEAD)
        self._commit = redis.register_script(_COMMIT)
        self._delivered = redis.register_script(_DELIVERED)
        self._release = redis.register_script(_RELEASE)
        self.notifications = Counter(
            "aggregator_alert_notifications_total",
            "Alert notifications by outcome (delivered; failed: retried; refused: the webhook answered 4xx, dropped)",
            ["outcome"], registry=registry,
        )
        self.leader_gauge = Gauge(
            "aggregator_alert_leader", "1 while this replica evaluates and sends the region alerts", registry=registry
        )
        self.outbox_gauge = Gauge(
            "aggregator_alert_outbox", "Alert notifications waiting for the webhook (seen by the leader)", registry=registry
        )

    def tasks(self) -> list[Coroutine[Any, Any, None]]:
        """The loops to run on the worker thread's event loop."""
        loops = [self.run()]
        if self.enabled:
            loops.append(self.run_delivery())
        return loops

    async def close(self) -> None:
        """Give up the alert lease (another replica takes over without waiting for it to expire)."""
        if self.leader:
            try:
                await self._release(keys=[self.keys.alert_leader], args=[self.owner])
            except Exception as error:  # noqa: BLE001 - stopping: the lease expires by itself
                log.warning("could not release the alert lease", extra={"error": repr(error)})

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def run(self) -> None:
        """Every interval: read the counts, update the gauges, evaluate the alerts if leading."""
        if self.enabled:
            log.info("region alerts on", extra={"webhook": self.target, "format": self.settings.alert_format,
                                                "thresholds": self.thresholds, "for_s": self.settings.alert_for})
        backoff = redis_backoff()
        while not self.stopping.is_set():
            delay = self.settings.region_status_interval
            try:
                known, non_ok, by_status = await self.store.region_status_counts(ALERT_STATUSES)
                counts = alerts.region_counts(known, non_ok, by_status)
                self.collector.counts = counts
                if self.enabled:
                    await self.evaluate(counts, time.time())
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - Redis down: the fold loop reports it too
                delay = max(delay, backoff.next())
                log.warning("region status read failed; retrying", extra={"error": repr(error), "retry_in_s": delay})
            await self._sleep(delay)

    async def evaluate(self, counts: RegionCounts, now: float) -> None:
        """Take or renew the lease; as the leader, store the transitions and queue their notifications."""
        leading = bool(await self._lead(keys=[self.keys.alert_leader], args=[self.owner, self.lease_ms]))
        if leading != self.leader:
            log.info("region alerts: " + ("this replica sends them" if leading else "another replica sends them"))
            self.leader = leading
            self.leader_gauge.set(1 if leading else 0)
        if not leading:
            self.collector.firing = set()
            return
        raw = await self.redis.hgetall(self.keys.alert_episodes)
        episodes = {alerts.field_key(field): Episode.from_json(value) for field, value in raw.items()}
        transitions = alerts.evaluate(counts, episodes, self.rules, self.settings.alert_for,
                                      self.settings.alert_repeat_interval, now)
        if transitions:
            args: list[Any] = [self.owner]
            for transition in transitions:
                notification = b""
                if transition.notify is not None:
                    notification = self._body(transition, episodes.get(transition.key), counts)
                episode = b"" if transition.episode is None else transition.episode.to_json()
                args += [alerts.key_field(transition.key), episode, notification]
            committed = await self._commit(keys=[self.keys.alert_leader, self.keys.alert_episodes, self.keys.alert_outbox],
                                           args=args)
            if not committed:  # the lease ran out between the renewal and now: the next leader decides
                return
            for transition in transitions:
                if transition.episode is None:
                    episodes.pop(transition.key, None)
                else:
                    episodes[transition.key] = transition.episode
                if transition.notify is not None:
                    status, region = transition.key
                    log.info("region alert " + transition.notify,
                             extra={"region": region, "status": status, "share": round(transition.share, 4)})
                    self.queued.set()
        self.collector.firing = {key for key, episode in episodes.items() if episode.phase == "firing"}

    def _body(self, transition: alerts.Transition, before: Episode | None, counts: RegionCounts) -> bytes:
        status, region = transition.key
        row = counts.get(region, {})
        episode = transition.episode if transition.notify == "firing" else before
        assert episode is not None  # a resolution ends a stored episode
        message = Message(
            state=transition.notify or "firing", key=transition.key, share=transition.share,
            threshold=self.thresholds[status], starts_at=episode.fired or episode.since, ends_at=transition.ended,
            severity=self.settings.alert_severity, meters=row.get(status, 0), total=row.get("total", 0),
        )
        return alerts.body(message, self.settings.alert_format, external_url=self.settings.alert_dashboard_url)

    async def run_delivery(self) -> None:
        """Post the outbox's notifications in order, each until the webhook takes it."""
        backoff = Backoff(WEBHOOK_FIRST_DELAY, WEBHOOK_MAX_DELAY)
        async with httpx.AsyncClient(timeout=self.settings.alert_timeout) as client:
            while not self.stopping.is_set():
                self.queued.clear()
                try:
                    head = await self.redis.lindex(self.keys.alert_outbox, 0) if self.leader else None
                    if self.leader:
                        self.outbox_gauge.set(await self.redis.llen(self.keys.alert_outbox))
                except Exception as error:  # noqa: BLE001 - Redis down: the fold loop reports it
                    log.warning("alert outbox read failed; retrying", extra={"error": repr(error)})
                    await self._sleep(backoff.next())
                    continue
                if head is None:
                    await self._wait_queued(self.settings.region_status_interval)
                    continue
                outcome = await self._post(client, head)
                self.notifications.labels(outcome).inc()
                if outcome == "failed":
                    delay = backoff.next()
                    log.warning("alert webhook failed; retrying",
                                extra={"webhook": self.target, "retry_in_s": delay, "attempt": backoff.attempts})
                    await self._sleep(delay)
                    continue
                backoff.reset()
                try:
                    await self._delivered(keys=[self.keys.alert_leader, self.keys.alert_outbox], args=[self.owner, head])
                except Exception as error:  # noqa: BLE001 - posted again after Redis is back (at least once)
                    log.warning("alert outbox update failed", extra={"error": repr(error)})

    async def _wait_queued(self, seconds: float) -> None:
        queued = asyncio.ensure_future(self.queued.wait())
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({queued, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            queued.cancel()
            stopping.cancel()

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> str:
        """delivered (2xx), refused (4xx but 408/429: retrying would not help) or failed."""
        try:
            response = await client.post(self.url, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as error:
            # The error's text may hold the URL (and with it a token): only its kind is logged.
            log.warning("alert webhook unreachable", extra={"webhook": self.target, "error": type(error).__name__})
            return "failed"
        if 200 <= response.status_code < 300:
            return "delivered"
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            log.error("alert webhook refused a notification; dropped (check the webhook and SMARTGRID_ALERT_FORMAT)",
                      extra={"webhook": self.target, "http_status": response.status_code,
                             "answer": response.text[:300]})
            return "refused"
        log.warning("alert webhook answered an error", extra={"webhook": self.target, "http_status": response.status_code})
        return "failed"
