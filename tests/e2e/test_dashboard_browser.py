"""The dashboard page in headless Chromium (Debian's package) against a running aggregator with
state: the numbers in the DOM are the folded ones, the headline shows the newest complete second and
the open one is drawn apart; the region map draws the US states, places the simulator's regions in
their states with labels that do not overlap, lists a region it cannot place, and a click on a
region filters the alerts table (driven over the DevTools protocol, with real mouse events). With
SMARTGRID_UPDATE_SCREENSHOT=1 its screenshot replaces the README's, docs/images/dashboard.png (a
plain run leaves the checkout as it was).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from redis import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from simulator.fleet import REGIONS as SIMULATED_REGIONS
from smartgrid_common.contracts import summary_stream

from aggregator.testing import free_port, ground_truth, http_ok, make_readings, make_summaries, start_service, wait_until
from aggregator.views import COMPLETE_GRACE_S

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WINDOW = (1400, 1250)
# The simulator's regions (US service territories, placed by their meters' coordinates), one whose
# meters lie off the US map (listed under it, never dropped) and one placed by SMARTGRID_REGION_PLACES.
CENTRES = {region.name: (region.latitude, region.longitude) for region in SIMULATED_REGIONS} | {
    "svalbard": (78.2, 15.6), "region-07": (61.0, 9.0)}
WEIGHTS = {region.name: region.weight for region in SIMULATED_REGIONS} | {"svalbard": 0.03, "region-07": 0.03}
PLACES = "region-07=Nevada"
ON_MAP = len(CENTRES) - 1
# Regions whose centre lies well inside one state: their markers must be drawn inside its outline.
INSIDE = {"texas-gulf-coast": "Texas", "rocky-mountain": "Colorado", "desert-southwest": "Arizona",
          "ohio-valley": "Ohio", "southeast-piedmont": "Georgia", "region-07": "Nevada"}


def chromium(url: str, mode: list[str], profile: Path) -> str:
    """Run headless Chromium once; virtual time lets the page's fetches finish before the dump."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=6000", "--hide-scrollbars", *mode, url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class DevTools:
    """Headless Chromium driven over the DevTools protocol: evaluate JavaScript in the page, click
    with real mouse events at a point, take a screenshot."""

    def __init__(self, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", "--remote-debugging-port=0",
             "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        found: list[str] = []
        lines: list[str] = []

        def read_stderr() -> None:  # Chromium names its DevTools address on stderr
            for line in self.proc.stderr:
                lines.append(line)
                match = re.search(r"DevTools listening on (ws://\S+)", line)
                if match and not found:
                    found.append(match.group(1))

        threading.Thread(target=read_stderr, daemon=True).start()
        wait_until(lambda: found or self.proc.poll() is not None, 30, what="Chromium's DevTools address")
        assert found, "".join(lines)[-2000:]
        http_base = found[0].split("/devtools/")[0].replace("ws://", "http://")
        pages = [t for t in httpx.get(f"{http_base}/json/list", timeout=10).json() if t["type"] == "page"]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params or {}}))
        while True:  # events in between are not needed
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_js(self, expression: str, timeout: float, what: str) -> Any:
        """Polls until ``expression`` is truthy (an error, e.g. while a page loads, counts as false)."""
        guarded = f"(() => {{ try {{ return {expression}; }} catch (error) {{ return false; }} }})()"
        wait_until(lambda: self.js(guarded), timeout, what=what)
        return self.js(expression)

    def click(self, x: float, y: float) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            self.proc.wait(10)


# The alerts table's rows as [meter, status, region], and the filter the page shows.
ALERT_ROWS = "[...document.querySelectorAll('#alerts-table tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
# Where a click on a region lands on it (its marker's centre, else its label's): the point whose
# topmost element is the region's; null when something else covers both.
CLICK_POINT = """(name => {
  for (const el of document.querySelectorAll(`#map [data-region="${CSS.escape(name)}"]`)) {
    el.scrollIntoView({block: "center"});
    const r = el.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
    const top = document.elementFromPoint(x, y);
    if (top && top.closest("[data-region]") && top.closest("[data-region]").dataset.region === name) return [x, y];
  }
  return null;
})"""


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
    readings = make_readings(meters=60, seconds=3540, start=start, seed=21, late_share=0.01, centres=CENTRES, weights=WEIGHTS)
    readings += make_readings(meters=400, seconds=60, start=start + 3540, seed=22, late_share=0.02, centres=CENTRES, weights=WEIGHTS)
    # The open second: its first readings only (a drop that must not reach the headline).
    readings += make_readings(meters=400, seconds=1, start=last_complete + 1, seed=23, centres=CENTRES, weights=WEIGHTS)[:40]
    truth = ground_truth(readings)
    region_of = {reading.meter_id: reading.region for reading in readings}
    alerts_by_region: dict[str, int] = {}
    for meter in truth["alerts"]:
        alerts_by_region[region_of[meter]] = alerts_by_region.get(region_of[meter], 0) + 1
    assert len(alerts_by_region) >= 2, "the filter needs alerts in two regions at least"
    assert max(truth["seconds"]) == last_complete + 1
    port = free_port()
    proc = start_service(
        "aggregator",
        {"SMARTGRID_REDIS_PREFIX": prefix, "SMARTGRID_HTTP_PORT": str(port), "SMARTGRID_HTTP_HOST": "127.0.0.1",
         "SMARTGRID_AGGREGATOR_BATCH": "500", "SMARTGRID_REGION_PLACES": PLACES},
        str(tmp_path / "aggregator.log"),
    )
    try:
        summaries = make_summaries(readings, partitions=4, batch=2000)
        pipe = redis.pipeline()
        for summary in summaries:
            pipe.xadd(summary_stream(prefix), {"data": summary.to_json()})
        pipe.execute()
        def applied() -> bool:
            try:
                return int(redis.hget(f"{prefix}:agg:stats", "applied") or 0) == len(summaries)
            except (RedisTimeoutError, ResponseError) as error:  # a fold script running long on a busy machine
                if isinstance(error, ResponseError) and not str(error).startswith("BUSY"):
                    raise
                return False

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
        markers = re.findall(r'<circle[^>]*class="region[ "][^>]*data-region="([^"]+)"', dom)
        assert sorted(markers) == sorted(set(CENTRES) - {"svalbard"})
        assert re.search(r'id="map-unplaced"[^>]*>not on the map: <span><button data-region="svalbard"', dom)
        assert dom.count("data-meter=") == min(15, len(truth["alerts"]))
        assert "<polyline" in dom

        shot = tmp_path / "dashboard.png"
        browser = DevTools(tmp_path / "profile-devtools")
        try:
            check_map_and_filter(browser, url, alerts_by_region, len(truth["alerts"]))
            browser.screenshot(shot)
        finally:
            browser.close()
        assert shot.stat().st_size > 10_000
        if os.environ.get("SMARTGRID_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, REPO / "docs" / "images" / "dashboard.png")
    except AssertionError:
        print((tmp_path / "aggregator.log").read_text()[-3000:])
        raise
    finally:
        proc.terminate()
        proc.wait(10)
        for key in redis.scan_iter(f"{prefix}:*", count=1000):
            redis.delete(key)


def check_map_and_filter(browser: DevTools, url: str, alerts_by_region: dict[str, int], alerts_total: int) -> None:
    """The map's outline, markers and labels, then a click on a region filtering the alerts table,
    a second click and the clear control restoring it; leaves the page filtered to the region with
    the most alerts (the screenshot shows it)."""
    browser.call("Page.navigate", {"url": url})
    browser.wait_js(f"document.querySelectorAll('#map circle.region').length === {ON_MAP} && "
                    "document.querySelectorAll('#alerts-table tbody tr').length > 0", 30, what="the map and alerts")
    # The outline: every state (and DC) as its own path, inside the map's frame.
    states = browser.js("[...document.querySelectorAll('#map path.state')].map(p => p.dataset.state)")
    assert len(states) == 51 and {"Texas", "California", "Alaska", "Hawaii", "District of Columbia"} <= set(states)
    assert browser.js("document.querySelector('#map path.nation').getBBox().width") > 900
    # A region is drawn inside the state its meters are in.
    for region, state in INSIDE.items():
        inside = browser.js(f"""(() => {{
            const c = document.querySelector('#map circle[data-region="{region}"]');
            const point = new DOMPoint(+c.getAttribute('cx'), +c.getAttribute('cy'));
            return document.querySelector('#map path[data-state="{state}"]').isPointInFill(point);
        }})()""")
        assert inside, f"{region} is not drawn inside {state}"
    # Sized by consumption: the largest circle is the region of the most kWh, and it is ringed.
    circles = browser.js("[...document.querySelectorAll('#map circle.region')].map(c => "
                         "[c.dataset.region, +c.dataset.kwh, +c.getAttribute('r'), c.classList.contains('high')])")
    by_kwh = sorted(circles, key=lambda c: -c[1])
    assert max(circles, key=lambda c: c[2])[0] == by_kwh[0][0] and by_kwh[0][3]
    assert sum(c[3] for c in circles) == 3
    # One label per region, none overlapping another (their rendered boxes), all inside the map.
    boxes = browser.js("""[...document.querySelectorAll('#map text.region-label')].map(t => {
        const r = t.getBoundingClientRect(); return [t.dataset.region, r.left, r.top, r.right, r.bottom]; })""")
    frame = browser.js("(r => [r.left, r.top, r.right, r.bottom])(document.querySelector('#map').getBoundingClientRect())")
    assert sorted(b[0] for b in boxes) == sorted(c[0] for c in circles)
    for index, (name, left, top, right, bottom) in enumerate(boxes):
        assert right > left and bottom > top, f"label {name} has no size"
        assert frame[0] <= left and right <= frame[2] and frame[1] <= top and bottom <= frame[3], f"label {name} leaves the map"
        for other, o_left, o_top, o_right, o_bottom in boxes[index + 1:]:
            assert right <= o_left or o_right <= left or bottom <= o_top or o_bottom <= top, f"labels {name} and {other} overlap"
    assert browser.js("document.querySelector('#map circle.region').getAttribute('role')") == "button"

    # A click on the region with the most alerts: the table shows only its alerts, the page says so.
    rows = browser.js(ALERT_ROWS)
    assert len({row[2] for row in rows}) >= 2, rows
    region = max(alerts_by_region, key=lambda name: (alerts_by_region[name], name))
    point = browser.js(f"{CLICK_POINT}({json.dumps(region)})")
    assert point, f"no point of {region} can be clicked"
    browser.click(*point)
    filtered = f"document.querySelector('#alerts-table').dataset.region === {json.dumps(region)}"
    browser.wait_js(filtered, 15, what="the alerts filtered by the click")
    rows = browser.js(ALERT_ROWS)
    assert len(rows) == min(15, alerts_by_region[region]) and {row[2] for row in rows} == {region}, rows
    assert browser.js("document.querySelector('#alerts-total').textContent") == f"{alerts_by_region[region]} meters"
    assert browser.js("location.hash") == f"#region={region}"
    assert browser.js("document.querySelector('#region-filter').hidden") is False
    assert browser.js("document.querySelector('#region-filter b').textContent") == region
    assert browser.js(f"document.querySelector('#map circle[data-region=\"{region}\"]').getAttribute('aria-pressed')") == "true"
    # Clicked again: every region's alerts.
    point = browser.js(f"{CLICK_POINT}({json.dumps(region)})")
    browser.click(*point)
    browser.wait_js("document.querySelector('#alerts-table').dataset.region === ''", 15, what="the filter cleared")
    assert browser.js("document.querySelector('#alerts-total').textContent") == f"{alerts_total} meters"
    assert browser.js("location.hash") == ""
    assert len({row[2] for row in browser.js(ALERT_ROWS)}) >= 2
    # Another region from the keyboard (its marker focused, Enter), then the clear control.
    second = max((name for name in alerts_by_region if name != region), key=lambda name: (alerts_by_region[name], name))
    marker = f"#map circle[data-region={json.dumps(second)}]"
    if browser.js(f"!!document.querySelector('{marker}')"):
        browser.js(f"document.querySelector('{marker}').focus()")
        for kind in ("keyDown", "keyUp"):
            browser.call("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13})
    else:  # off the map (svalbard): its button under the map
        browser.js(f"document.querySelector('#map-unplaced button[data-region={json.dumps(second)}]').click()")
    browser.wait_js(f"document.querySelector('#alerts-table').dataset.region === {json.dumps(second)}", 15, what="the second filter")
    assert {row[2] for row in browser.js(ALERT_ROWS)} == {second}
    clear = browser.js("(r => [r.left + r.width / 2, r.top + r.height / 2])(document.querySelector('#clear-region').getBoundingClientRect())")
    browser.click(*clear)
    browser.wait_js("document.querySelector('#alerts-table').dataset.region === ''", 15, what="the filter cleared")
    assert browser.js("document.querySelector('#region-filter').hidden") is True
    assert browser.js("document.querySelector('#alerts-total').textContent") == f"{alerts_total} meters"
    # A link with the filter in its hash opens filtered (the state the screenshot shows).
    browser.call("Page.navigate", {"url": f"{url}&from=link#region={region}"})
    browser.wait_js(f"{filtered} && document.querySelectorAll('#map circle.region').length === {ON_MAP}", 30,
                    what="the page opened with the filter")
    assert {row[2] for row in browser.js(ALERT_ROWS)} == {region}
