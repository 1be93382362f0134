"""Optional access control of the dashboard and its API: one bearer token (SMARTGRID_API_TOKEN,
or a file mounted from a Secret: SMARTGRID_API_TOKEN_FILE).

Readings per meter are personal data (consumption reveals occupancy), so with a token set every
route asks for it except the health endpoints, the static assets and the login form:

- API clients send ``Authorization: Bearer <token>``;
- a browser opening ``/`` is sent to ``/login``, a form that takes the token once and sets an
  HttpOnly, SameSite=Strict session cookie; the page's fetches and its event stream (which cannot
  send headers) carry the cookie. The cookie holds an HMAC of the token, not the token: changing
  the token ends every session.

Tokens are compared in constant time (``hmac.compare_digest``). Behind oauth2-proxy the token may
stay off: the chart's NetworkPolicy then lets only the proxy reach the dashboard port
(docs/kubernetes.md, "Access").
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "smartgrid_session"
SESSION_MAX_AGE_S = 12 * 3600
MAX_FORM_BYTES = 4096
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/stats", "/login", "/logout"})
"""Paths that never ask for the token: probes and Prometheus (on the metrics port in the chart's
layout), and the login form itself."""

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Smart grid - sign in</title>
<style>body{{font-family:system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;margin:0}}
form{{display:grid;gap:.6rem;min-width:18rem}}input,button{{font:inherit;padding:.4rem}}.error{{color:#b00020}}</style>
</head><body><form method="post" action="/login">
<h1>Smart grid dashboard</h1>
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
{error}<button type="submit">Sign in</button>
</form></body></html>
"""


def session_value(token: str) -> str:
    """The session cookie's value for ``token`` (an HMAC of it: the cookie never holds the token)."""
    return hmac.new(token.encode(), b"smartgrid dashboard session", hashlib.sha256).hexdigest()


def bearer(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def cookie(headers: Headers, name: str) -> str | None:
    """One cookie's value from the ``Cookie`` header."""
    for part in headers.get("cookie", "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def equal(given: str | None, expected: str) -> bool:
    """Constant-time comparison (no early exit that would tell how much of a guess was right)."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class TokenAuth:
    """ASGI middleware: every route but :data:`OPEN_PATHS` and ``/static/`` needs the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token
        self.session = session_value(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = Headers(scope=scope)
        if path == "/login" and scope["method"] == "POST":
            await (await self.login(scope, receive, headers))(scope, receive, send)
            return
        if path == "/login":
            await HTMLResponse(LOGIN_PAGE.format(error=""))(scope, receive, send)
            return
        if path == "/logout":
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(COOKIE, path="/")
            await response(scope, receive, send)
            return
        if path in OPEN_PATHS or path.startswith("/static/") or self.authorized(headers):
            await self.app(scope, receive, send)
            return
        if path == "/" and scope["method"] in ("GET", "HEAD"):
            await RedirectResponse("/login", status_code=303)(scope, receive, send)
            return
        await JSONResponse(
            {"detail": "this dashboard needs its access token: send Authorization: Bearer <token>, or sign in at /login"},
            status_code=401, headers={"WWW-Authenticate": 'Bearer realm="smartgrid"'},
        )(scope, receive, send)

    def authorized(self, headers: Headers) -> bool:
        """A valid bearer token or session cookie."""
        return equal(bearer(headers), self.token) or equal(cookie(headers, COOKIE), self.session)

    async def login(self, scope: Scope, receive: Receive, headers: Headers) -> Response:
        """Check the form's token; right: the session cookie and back to the dashboard."""
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_FORM_BYTES:
                return Response("form too large", status_code=413)
            if not message.get("more_body"):
                break
        given = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if not equal(given, self.token):
            error = '<p class="error" role="alert">That token is not right.</p>'
            return HTMLResponse(LOGIN_PAGE.format(error=error), status_code=401)
        response = RedirectResponse("/", status_code=303)
        # Secure when the page was reached over HTTPS (directly or through a proxy that says so).
        secure = scope.get("scheme") == "https" or headers.get("x-forwarded-proto", "") == "https"
        response.set_cookie(COOKIE, self.session, max_age=SESSION_MAX_AGE_S, path="/", httponly=True,
                            samesite="strict", secure=secure)
        return response
