"""The dashboard's map bundle (static/map.js) is committed build output: it must be what
services/aggregator/web builds from its sources and package-lock.json, so the Python package and
the image ship it without Node. Also: the page fetches nothing from elsewhere, and the bundle stays
small. Rebuilding needs npm (.ci/run installs it; packages are cached under ~/.cache/smartgrid/npm).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "services" / "aggregator" / "web"
STATIC = ROOT / "services" / "aggregator" / "src" / "aggregator" / "static"
NPM_CACHE = Path(os.environ.get("SMARTGRID_CACHE", Path.home() / ".cache" / "smartgrid")) / "npm"


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed (.ci/run installs it)")
def test_committed_map_bundle_is_rebuilt_byte_for_byte_from_the_locked_sources(tmp_path):
    build = tmp_path / "web"
    build.mkdir()
    for name in ("package.json", "package-lock.json", "build.mjs"):
        shutil.copy(WEB / name, build / name)
    shutil.copytree(WEB / "src", build / "src")
    env = {**os.environ, "npm_config_cache": str(NPM_CACHE), "npm_config_update_notifier": "false"}
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=build, env=env, check=True,
                   capture_output=True, timeout=300)
    subprocess.run(["node", "build.mjs", "--out", str(tmp_path / "map.js")], cwd=build, env=env, check=True,
                   capture_output=True, timeout=120)
    assert (tmp_path / "map.js").read_bytes() == (STATIC / "map.js").read_bytes(), (
        "static/map.js is not what services/aggregator/web builds: run `npm ci && npm run build` there and commit it"
    )


def test_map_bundle_is_small_and_loaded_by_the_page_before_the_app():
    size = (STATIC / "map.js").stat().st_size
    assert 20_000 < size < 300_000, size
    page = (STATIC / "index.html").read_text()
    assert page.index('src="/static/map.js"') < page.index('src="/static/app.js"')


def test_the_dashboard_fetches_nothing_from_elsewhere():
    for path in STATIC.iterdir():
        text = path.read_text()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"'`)]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)


# Runs the committed bundle in Node (no DOM: only its pure functions are called).
CROWD = r"""
globalThis.window = {};
require("vm").runInThisContext(require("fs").readFileSync(process.argv[2], "utf8"));
const { placeLabels, locate } = window.SmartgridMap;
// 60 regions: 40 piled on one point, 20 in a row; labels of assorted sizes.
const items = [];
for (let i = 0; i < 60; i++) {
  const crowd = i < 40;
  items.push({ x: crowd ? 600 : 100 + 40 * (i - 40), y: crowd ? 200 : 550, r: 6 + (i % 5) * 4,
               w: 40 + (i * 37) % 90, h: 19 });
}
const boxes = placeLabels(items);
let overlaps = 0, outside = 0;
boxes.forEach((a, i) => {
  if (a.x < 0 || a.y < 0 || a.x + a.w > 975 || a.y + a.h > 610) outside++;
  boxes.slice(i + 1).forEach((b) => {
    if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h) overlaps++;
  });
});
const places = {
  seattle: locate({ region: "x", lat: 47.6, lon: -122.3 }),
  texasByName: locate({ region: "Texas", lat: null, lon: null }),
  newYorkByName: locate({ region: "new-york", lat: null, lon: null }),
  configuredState: locate({ region: "region-01", lat: 47.6, lon: -122.3, state: "Florida" }),
  oslo: locate({ region: "oslo", lat: 59.9, lon: 10.7 }),
};
console.log(JSON.stringify({ count: boxes.length, overlaps, outside, places }));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (.ci/run installs it)")
def test_crowded_labels_never_overlap_and_regions_are_located_by_coordinates_state_or_name(tmp_path):
    script = tmp_path / "crowd.js"
    script.write_text(CROWD)
    done = subprocess.run(["node", str(script), str(STATIC / "map.js")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["count"], result["overlaps"], result["outside"]) == (60, 0, 0)
    places = result["places"]
    # The Albers USA frame (975 x 610): Seattle top left, Texas lower middle, New York upper right.
    assert places["seattle"][0] < 200 and places["seattle"][1] < 150
    assert 350 < places["texasByName"][0] < 550 and places["texasByName"][1] > 350
    assert places["newYorkByName"][0] > 750 and places["newYorkByName"][1] < 250
    assert places["configuredState"][0] > 750 and places["configuredState"][1] > 450  # Florida, not Seattle
    assert places["oslo"] is None
