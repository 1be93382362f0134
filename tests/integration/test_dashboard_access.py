"""The dashboard's optional access token, against a real aggregator process and the real Redis:
without the token the API and the event stream answer 401 and the page sends a browser to the
login form; the bearer token or the form's session cookie open them; health stays open; a token
that could be guessed, or a token file that is missing, stops start-up."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from aggregator.auth import COOKIE

pytestmark = pytest.mark.integration

TOKEN = "0123456789abcdef-dashboard-token"


@pytest.fixture
def dashboard(aggregator):
    """An aggregator whose dashboard needs a token (``extra`` settings as keywords); its base URL."""
    return lambda **extra: aggregator(SMARTGRID_EMIT_ROLLUPS="false", **extra)


def first_event(client: httpx.Client, url: str, **kwargs) -> str:
    with client.stream("GET", f"{url}/api/stream", timeout=10, **kwargs) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                return line
    raise AssertionError("the stream ended without an event")


def test_without_the_token_the_api_and_stream_are_closed_and_with_it_they_answer(dashboard):
    url = dashboard(SMARTGRID_API_TOKEN=TOKEN)
    for path in ("/api/status", "/api/live?seconds=5", "/api/meters", "/api/regions", "/api/trend", "/api/stream",
                 "/docs", "/openapi.json"):
        response = httpx.get(url + path, timeout=10)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = httpx.get(url + path, headers={"Authorization": "Bearer " + TOKEN[:-1] + "X"}, timeout=10)
        assert wrong.status_code == 401, path
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{url}/api/status", headers=auth, timeout=10).json()["total"] == 0
    assert httpx.get(f"{url}/api/live?seconds=5", headers=auth, timeout=10).status_code == 200
    with httpx.Client() as client:
        assert '"status"' in first_event(client, url, headers=auth)
    for path in ("/healthz", "/readyz", "/metrics", "/static/app.js"):
        assert httpx.get(url + path, timeout=10).status_code == 200, path


def test_a_browser_signs_in_once_and_its_session_cookie_opens_the_page_api_and_stream(dashboard):
    url = dashboard(SMARTGRID_API_TOKEN=TOKEN)
    with httpx.Client(base_url=url, timeout=10) as browser:
        page = browser.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert 'name="token"' in browser.get("/login").text
        refused = browser.post("/login", data={"token": "not-the-token-at-all"})
        assert refused.status_code == 401 and COOKIE not in browser.cookies
        signed_in = browser.post("/login", data={"token": TOKEN})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        set_cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie and TOKEN not in set_cookie
        assert "<html" in browser.get("/").text.lower()
        assert browser.get("/api/status").status_code == 200
        assert '"live"' in first_event(browser, url)
        browser.get("/logout")
        assert browser.get("/api/status").status_code == 401


def test_the_token_can_come_from_a_file_mounted_from_a_secret(dashboard, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    url = dashboard(SMARTGRID_API_TOKEN_FILE=str(token_file))
    assert httpx.get(f"{url}/api/status", timeout=10).status_code == 401
    assert httpx.get(f"{url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 200


def test_without_a_token_the_dashboard_stays_open(dashboard):
    url = dashboard()
    assert httpx.get(f"{url}/api/status", timeout=10).status_code == 200
    assert httpx.get(f"{url}/", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"SMARTGRID_API_TOKEN": "short-secret"}, "SMARTGRID_API_TOKEN must be at least 16 characters"),
        ({"SMARTGRID_API_TOKEN_FILE": "/nonexistent/token"}, "SMARTGRID_API_TOKEN_FILE '/nonexistent/token' cannot be read"),
    ],
)
def test_a_guessable_token_or_a_missing_token_file_stops_start_up(settings, says):
    env = {**os.environ, "SMARTGRID_REDIS_URL": "redis://127.0.0.1:1/0", **settings}
    result = subprocess.run([sys.executable, "-m", "aggregator"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and says in result.stderr
    assert "short-secret" not in result.stderr
