"""The dashboard's map bundle (static/map.js) is committed build output: it must be what
services/aggregator/web builds from its sources and package-lock.json, so the Python package and
the image ship it without Node. Also: the page fetches nothing from elsewhere, and the bundle stays
small. Rebuilding needs npm (.ci/run installs it; packages are cached under ~/.cache/smartgrid/npm).
"""

from __future__ import annotations

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
