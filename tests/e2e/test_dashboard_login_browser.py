"""The dashboard behind its access token, in headless Chromium (Debian's package) against a real
aggregator with state: the page sends the browser to the login form, the form's session cookie
(HttpOnly: the page's scripts cannot read it) lets the page's fetches and its event stream load
the live numbers."""

from __future__ import annotations

import json
import os
import time
import uuid

import httpx
import pytest
from redis import Redis
from smartgrid_common.contracts import summary_stream
from test_dashboard_browser import CHROMIUM, DevTools

from aggregator.testing import free_port, http_ok, make_readings, make_summaries, start_service, wait_until

pytestmark = pytest.mark.integration

TOKEN = "e2e-dashboard-token-0123456789"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_a_browser_signs_in_with_the_token_and_the_page_shows_the_live_state(tmp_path):
    redis = Redis.from_url(os.environ.get("SMARTGRID_REDIS_URL", "redis://127.0.0.1:6379/0"))
    prefix = f"e2e-login-{uuid.uuid4().hex[:8]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_service("aggregator", {"SMARTGRID_REDIS_PREFIX": prefix, "SMARTGRID_HTTP_PORT": str(port),
                                        "SMARTGRID_HTTP_HOST": "127.0.0.1", "SMARTGRID_EMIT_ROLLUPS": "false",
                                        "SMARTGRID_API_TOKEN": TOKEN}, str(tmp_path / "aggregator.log"))
    browser = None
    try:
        wait_until(lambda: http_ok(f"{url}/readyz"), 30, what="the aggregator")
        summaries = make_summaries(make_readings(meters=300, seconds=6, start=int(time.time()) - 30, faulty_share=0.1),
                                   partitions=4, batch=200)
        for summary in summaries:
            redis.xadd(summary_stream(prefix), {"data": summary.to_json()})
        wait_until(lambda: int(redis.hget(f"{prefix}:agg:stats", "applied") or 0) == len(summaries), 60,
                   what="the summaries to be folded")
        total = httpx.get(f"{url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()["total"]
        assert total > 0

        browser = DevTools(tmp_path / "profile")
        browser.call("Page.enable")
        browser.call("Page.navigate", {"url": f"{url}/"})
        browser.wait_js("location.pathname === '/login' && !!document.getElementById('token')", 30, what="the login form")
        browser.js(f"document.getElementById('token').value = {json.dumps(TOKEN)}; document.forms[0].submit(); true")
        shown = f"{total:,}"
        browser.wait_js(f"location.pathname === '/' && document.getElementById('meters-total').textContent === {json.dumps(shown)}",
                        30, what=f"the dashboard showing {shown} meters")
        assert "smartgrid_session" not in browser.js("document.cookie")  # HttpOnly
        # The live chart comes from the API and its event stream: the cookie opened them.
        browser.wait_js("document.querySelector('#live-chart polyline') !== null", 30, what="the live chart")
    except AssertionError:
        print((tmp_path / "aggregator.log").read_text()[-3000:])
        raise
    finally:
        if browser is not None:
            browser.close()
        proc.terminate()
        proc.wait(10)
        for key in redis.scan_iter(f"{prefix}:*", count=1000):
            redis.delete(key)
