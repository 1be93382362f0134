"""The dashboard page in headless Chromium (Debian's package) against a running aggregator with
state: the numbers in the DOM are the folded ones, the headline shows the newest complete second and
the open one is drawn apart; a screenshot goes to docs/images/dashboard.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from redis import Redis
from smartgrid_common.contracts import summary_stream

from aggregator.testing import free_port, ground_truth, http_ok, make_readings, make_summaries, start_service, wait_until
from aggregator.views import COMPLETE_GRACE_S

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium(url: str, mode: list[str], profile: Path) -> str:
    """Run headless Chromium once; virtual time lets the page's fetches finish before the dump."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--window-size=1400,1050", "--virtual-time-budget=6000", "--hide-scrollbars", *mode, url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def text_of(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"#{element_id} not in the DOM"
    return match.group(1)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_dashboard_shows_the_live_state_and_is_screenshotted(tmp_path):
    redis = Redis.from_url(os.environ.get("SMARTGRID_REDIS_URL", "redis://127.0.0.1:6379/0"))
    prefix = f"test-e2e-{uuid.uuid4().hex[:8]}"
    # The newest complete second lies a little ahead of the wall clock (within the allowed clock
    # skew), so the second after it, which has only its first readings, stays open (it is not yet
    # COMPLETE_GRACE_S past its end) while the page is checked.
    last_complete = int(time.time()) + 150
    start = last_complete - 3599
    # An hour of a small fleet (a trend worth looking at), then the last minute at full density.
    readings = make_readings(meters=60, seconds=3540, start=start, seed=21, late_share=0.01)
    readings += make_readings(meters=400, seconds=60, start=start + 3540, seed=22, late_share=0.02)
    # The open second: its first readings only (a drop that must not reach the headline).
    readings += make_readings(meters=400, seconds=1, start=last_complete + 1, seed=23)[:40]
    truth = ground_truth(readings)
    assert max(truth["seconds"]) == last_complete + 1
    port = free_port()
    proc = start_service(
        "aggregator",
        {"SMARTGRID_REDIS_PREFIX": prefix, "SMARTGRID_HTTP_PORT": str(port), "SMARTGRID_HTTP_HOST": "127.0.0.1",
         "SMARTGRID_AGGREGATOR_BATCH": "500"},
        str(tmp_path / "aggregator.log"),
    )
    try:
        summaries = make_summaries(readings, partitions=4, batch=2000)
        pipe = redis.pipeline()
        for summary in summaries:
            pipe.xadd(summary_stream(prefix), {"data": summary.to_json()})
        pipe.execute()
        applied = lambda: int(redis.hget(f"{prefix}:agg:stats", "applied") or 0) == len(summaries)  # noqa: E731
        wait_until(applied, 120, what="the summaries to be folded")
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 30, what="the aggregator")
        # snapshot=1: the page skips its SSE stream, which would keep headless Chromium loading forever.
        url = f"http://127.0.0.1:{port}/?snapshot=1"
        dom = chromium(url, ["--dump-dom"], tmp_path / "profile-dom")
        assert time.time() < last_complete + 2 + COMPLETE_GRACE_S, "too slow: the open second closed by its grace"

        # The headline is the newest complete second, not the open one after it.
        expected_kwh = f"{truth['seconds'][last_complete][0]:,.3f}".rstrip("0").rstrip(".")
        assert text_of(dom, "kwh-now") == expected_kwh
        assert text_of(dom, "readings-now") == f"{truth['seconds'][last_complete][1]:,}"
        clock = lambda second: time.strftime("%H:%M:%S", time.gmtime(second))  # noqa: E731
        assert text_of(dom, "kwh-at") == f"at {clock(last_complete)} · {clock(last_complete + 1)} filling"
        # The open second is drawn apart (hollow point on a dashed line), once, at the chart's end.
        live_chart = re.search(r'<svg id="live-chart".*?</svg>', dom, re.S).group(0)
        open_points = re.findall(r'<circle[^>]*class="open-point"[^>]*data-time="(\d+)"', live_chart)
        assert open_points == [str(last_complete + 1)]
        assert 'class="open-line"' in live_chart
        assert text_of(dom, "status-ok") == f"{truth['status'].get('ok', 0):,}"
        assert text_of(dom, "status-fault") == f"{truth['status'].get('fault', 0):,}"
        assert text_of(dom, "status-clock_skew") == f"{truth['status'].get('clock_skew', 0):,}"
        assert text_of(dom, "meters-total") == f"{sum(truth['status'].values()):,}"
        assert text_of(dom, "alerts-total") == f"{len(truth['alerts'])} meters"
        assert len(re.findall(r'<circle[^>]*class="region"', dom)) == 5
        assert dom.count("data-meter=") == min(15, len(truth["alerts"]))
        assert "<polyline" in dom

        shot = tmp_path / "dashboard.png"
        chromium(url, [f"--screenshot={shot}"], tmp_path / "profile-shot")
        assert shot.stat().st_size > 10_000
        target = REPO / "docs" / "images" / "dashboard.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    except AssertionError:
        print((tmp_path / "aggregator.log").read_text()[-3000:])
        raise
    finally:
        proc.terminate()
        proc.wait(10)
        for key in redis.scan_iter(f"{prefix}:*", count=1000):
            redis.delete(key)
