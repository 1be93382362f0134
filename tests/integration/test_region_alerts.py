"""Region gauges and alerts against real aggregator processes and the real Redis: the gauges match
the meters folded, a region that crosses its threshold and recovers makes exactly one firing and
one resolved notification at a real local HTTP receiver (also with two replicas), a receiver that
is down gets the notification once it is back, and a bad webhook setting stops start-up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from redis import Redis
from smartgrid_common.contracts import summary_stream

from aggregator.alerts import ALERT_NAME
from aggregator.testing import Reading, free_port, make_readings, make_summaries, wait_until

pytestmark = pytest.mark.integration

FAST = {"SMARTGRID_REGION_STATUS_INTERVAL": "200ms", "SMARTGRID_ALERT_FOR": "1s"}


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POSTed JSON body (a webhook receiver)."""

    def __init__(self, port: int = 0) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                received.bodies.append(json.loads(self.rfile.read(length)))
                received.paths.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook/T000/B000/s3cr3t-token") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    started: list[Receiver] = []

    def start(port: int = 0) -> Receiver:
        started.append(Receiver(port))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def alerting(aggregator):
    """Aggregators that evaluate region alerts fast (FAST), without rollups; their base URLs."""

    def start(**settings: str) -> str:
        return aggregator(SMARTGRID_EMIT_ROLLUPS="false", **FAST, **settings)

    start.processes = aggregator.processes
    return start


def fold(redis: Redis, prefix: str, readings: list[Reading], topic: str) -> None:
    """Publishes the readings' summaries (a topic of their own: a chain of its own) and waits
    until they are folded."""
    summaries = make_summaries(readings, partitions=4, batch=50, topic=topic)
    stats = f"{prefix}:agg:stats"
    target = int(redis.hget(stats, "applied") or 0) + len(summaries)
    for summary in summaries:
        redis.xadd(summary_stream(prefix), {"data": summary.to_json()})
    wait_until(lambda: int(redis.hget(stats, "applied") or 0) == target, 60, what="the summaries to be folded")


def fleet(second: int, faulty: dict[str, int]) -> list[Reading]:
    """One reading of each of 10 meters in north and south; the first ``faulty[region]`` report fault."""
    readings = []
    for region in ("north", "south"):
        for index in range(10):
            status = "fault" if index < faulty.get(region, 0) else "ok"
            readings.append(Reading(f"{region}-{index}", region, second, 1.0, status, 60.0, 10.0))
    return readings


def gauges(url: str, name: str) -> dict[tuple[str, str], float]:
    """``name{region,status}`` samples of /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    pattern = rf'^{name}{{region="([^"]*)",status="([^"]*)"}} (\S+)$'
    return {(region, status): float(value) for region, status, value in re.findall(pattern, text, re.M)}


def metric(url: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", httpx.get(f"{url}/metrics", timeout=10).text, re.M)
    return float(match.group(1)) if match else 0.0


def test_region_gauges_count_each_regions_meters_by_status(redis, prefix, alerting):
    url = alerting()
    start = int(time.time()) - 30
    readings = make_readings(meters=300, seconds=12, start=start, faulty_share=0.3, late_share=0.0)
    fold(redis, prefix, readings, topic="t")
    last = {reading.meter_id: reading for reading in readings}
    truth: Counter[tuple[str, str]] = Counter((r.region, r.status) for r in last.values())
    regions = {r.region for r in last.values()}
    expected = {(region, status): float(truth[(region, status)]) for region in regions
                for status in ("ok", "fault", "offline", "clock_skew", "other")}
    assert any(truth[(region, "fault")] for region in regions)  # the data has faulty meters to count
    wait_until(lambda: gauges(url, "smartgrid_region_meters") == expected, 10, what="the region gauges")
    shares = gauges(url, "smartgrid_region_meters_share")
    for region in regions:
        meters = sum(truth[(region, status)] for status in ("ok", "fault"))
        assert shares[(region, "fault")] == pytest.approx(truth[(region, "fault")] / meters)


def test_a_region_crossing_and_recovering_posts_one_firing_and_one_resolved_with_two_replicas(
    redis, prefix, alerting, receiver
):
    hook = receiver()
    settings = {"SMARTGRID_ALERT_WEBHOOK_URL": hook.url(), "SMARTGRID_ALERT_FAULT_SHARE": "0.35",
                "SMARTGRID_ALERT_SEVERITY": "critical"}
    urls = [alerting(SMARTGRID_AGGREGATOR_CONSUMER="replica-a", **settings),
            alerting(SMARTGRID_AGGREGATOR_CONSUMER="replica-b", **settings)]
    now = int(time.time())
    fold(redis, prefix, fleet(now - 20, {"north": 1}), topic="calm")  # 10%: below the threshold
    wait_until(lambda: sum(metric(url, "aggregator_alert_leader") for url in urls) == 1, 10, what="one alert leader")
    fold(redis, prefix, fleet(now - 10, {"north": 5, "south": 2}), topic="storm")  # north 50%, south 20%
    wait_until(lambda: len(hook.bodies) >= 1, 15, what="the firing notification")
    firing = hook.bodies[0]
    assert firing["version"] == "4" and firing["status"] == "firing"
    (alert,) = firing["alerts"]
    assert alert["labels"] == {"alertname": ALERT_NAME, "region": "north", "status": "fault", "severity": "critical"}
    assert alert["status"] == "firing" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["annotations"]["meters"] == "5" and alert["annotations"]["region_meters"] == "10"
    leader = next(url for url in urls if metric(url, "aggregator_alert_leader") == 1)
    assert metric(leader, 'smartgrid_region_alert_firing{region="north",status="fault"}') == 1
    # 30% is below the threshold (35%) but above the clear level (80% of it, 28%): still firing,
    # nothing sent.
    fold(redis, prefix, fleet(now - 5, {"north": 3}), topic="easing")
    time.sleep(1.5)
    assert len(hook.bodies) == 1
    fold(redis, prefix, fleet(now - 2, {}), topic="calm-again")
    wait_until(lambda: len(hook.bodies) >= 2, 15, what="the resolved notification")
    time.sleep(1.5)  # anything sent twice would arrive by now
    assert len(hook.bodies) == 2, hook.bodies
    resolved = hook.bodies[1]
    assert resolved["status"] == "resolved"
    (ended,) = resolved["alerts"]
    assert ended["labels"] == alert["labels"] and ended["fingerprint"] == alert["fingerprint"]
    assert ended["startsAt"] == alert["startsAt"] and ended["endsAt"] > ended["startsAt"]
    assert hook.paths == ["/hook/T000/B000/s3cr3t-token"] * 2
    assert sum(metric(url, 'aggregator_alert_notifications_total{outcome="delivered"}') for url in urls) == 2


def test_a_killed_leaders_firing_alert_is_resolved_once_by_the_replica_that_takes_over(
    redis, prefix, alerting, receiver
):
    hook = receiver()
    settings = {"SMARTGRID_ALERT_WEBHOOK_URL": hook.url(), "SMARTGRID_ALERT_OFFLINE_SHARE": "0.3"}
    urls = [alerting(SMARTGRID_AGGREGATOR_CONSUMER="replica-a", **settings),
            alerting(SMARTGRID_AGGREGATOR_CONSUMER="replica-b", **settings)]
    now = int(time.time())
    storm = [r if r.region != "south" or r.meter_id >= "south-4" else
             Reading(r.meter_id, r.region, r.second, r.kwh, "offline", r.lat, r.lon) for r in fleet(now - 10, {})]
    fold(redis, prefix, storm, topic="storm")  # south: 4 of 10 offline
    wait_until(lambda: len(hook.bodies) == 1, 15, what="the firing notification")
    assert hook.bodies[0]["alerts"][0]["labels"]["region"] == "south"
    leader = next(url for url in urls if metric(url, "aggregator_alert_leader") == 1)
    survivor = next(url for url in urls if url != leader)
    alerting.processes[leader].kill()  # no goodbye: its lease has to expire (5 s)
    alerting.processes[leader].wait(10)
    wait_until(lambda: metric(survivor, "aggregator_alert_leader") == 1, 20, what="the other replica to take over")
    # It carries the episode on from Redis: still firing, nothing sent again.
    assert metric(survivor, 'smartgrid_region_alert_firing{region="south",status="offline"}') == 1
    assert len(hook.bodies) == 1
    fold(redis, prefix, fleet(now - 5, {}), topic="calm")
    wait_until(lambda: len(hook.bodies) == 2, 15, what="the resolved notification")
    time.sleep(1.0)
    assert [body["status"] for body in hook.bodies] == ["firing", "resolved"]
    assert hook.bodies[1]["alerts"][0]["fingerprint"] == hook.bodies[0]["alerts"][0]["fingerprint"]


def test_an_unreachable_webhook_is_retried_until_it_takes_the_notification(redis, prefix, alerting, receiver, tmp_path):
    port = free_port()  # nothing listens there yet
    url = alerting(SMARTGRID_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{port}/alerts?token=s3cr3t",
                     SMARTGRID_ALERT_FORMAT="slack", SMARTGRID_ALERT_FAULT_SHARE="0.3")
    fold(redis, prefix, fleet(int(time.time()) - 10, {"south": 6}), topic="t")
    wait_until(lambda: metric(url, 'aggregator_alert_notifications_total{outcome="failed"}') >= 1, 15,
               what="a failed delivery")
    hook = receiver(port)
    wait_until(lambda: len(hook.bodies) == 1, 20, what="the retried notification")
    assert hook.bodies[0]["text"].startswith("[FIRING] region south: 60.0% of meters are fault")
    log = (tmp_path / "aggregator-0.log").read_text()
    assert "alert webhook" in log and "s3cr3t" not in log  # retries logged, never the URL's secret
    time.sleep(1.0)
    assert len(hook.bodies) == 1


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"SMARTGRID_ALERT_WEBHOOK_URL": "hooks.example.com/services/s3cr3t"}, "SMARTGRID_ALERT_WEBHOOK_URL is invalid"),
        ({"SMARTGRID_ALERT_WEBHOOK_URL": "https://hooks.example.com/s3cr3t", "SMARTGRID_ALERT_OFFLINE_SHARE": "1.5"},
         "SMARTGRID_ALERT_OFFLINE_SHARE is invalid"),
        ({"SMARTGRID_ALERT_WEBHOOK_URL": "https://hooks.example.com/s3cr3t", "SMARTGRID_ALERT_FORMAT": "email"},
         "SMARTGRID_ALERT_FORMAT is invalid"),
    ],
)
def test_bad_alert_settings_stop_start_up_saying_what_to_set(settings, says):
    env = {"SMARTGRID_REDIS_URL": "redis://127.0.0.1:1/0", **settings}
    result = subprocess.run([sys.executable, "-m", "aggregator"], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert says in result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout
