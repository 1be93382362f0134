"""The polled endpoints' fast path (fastpath.py): plain queries answered from the shared views,
everything else passed on to FastAPI unchanged (which validates it as /docs says)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from aggregator.app import build_app
from aggregator.fastpath import SharedViewsFastPath, int_param, plain_params
from aggregator.settings import AggregatorSettings

LIVE = frozenset({"seconds"})


@pytest.mark.parametrize(
    ("query", "expected"),
    [(b"", {}), (b"seconds=60", {"seconds": "60"}), (b"status=&page=2", {"status": "", "page": "2"}),
     (b"region=a%3Ab+c", {"region": "a:b c"})],
)
def test_known_parameters_given_once_are_taken(query, expected):
    assert plain_params(query, frozenset({"seconds", "status", "page", "region"})) == expected


@pytest.mark.parametrize("query", [b"seconds=1&seconds=2", b"seconds=5&foo=1", b"s\xc3\xa9conds=1"])
def test_repeated_unknown_or_undecodable_parameters_are_left_to_the_app(query):
    assert plain_params(query, LIVE) is None


@pytest.mark.parametrize(("raw", "expected"), [(None, 60), ("1", 1), ("3600", 3600), ("0", None), ("3601", None),
                                               ("060", None), ("+5", None), ("-1", None), ("", None), ("1e3", None),
                                               ("١٢", None)])
def test_only_plain_decimals_in_range_are_taken(raw, expected):
    params = {} if raw is None else {"seconds": raw}
    assert int_param(params, "seconds", 60, 1, 3600) == expected


def _call(middleware: SharedViewsFastPath, method: str, path: str, query: bytes) -> tuple[list[dict], list[str]]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request"}

    scope = {"type": "http", "method": method, "path": path, "query_string": query}
    asyncio.run(middleware(scope, receive, send))
    return sent, middleware.app.calls


class Downstream:
    """The app behind the fast path: records what reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.calls.append(scope["path"])


def fast_path() -> SharedViewsFastPath:
    async def live(params):
        seconds = int_param(params, "seconds", 60, 1, 3600)
        return None if seconds is None else b'{"seconds":%d}' % seconds

    return SharedViewsFastPath(Downstream(), {"/api/live": live}, {"/api/live": LIVE})


def test_a_plain_query_is_answered_with_the_views_json():
    sent, passed_on = _call(fast_path(), "GET", "/api/live", b"seconds=3600")
    assert passed_on == []
    assert sent[0]["status"] == 200 and (b"content-type", b"application/json") in sent[0]["headers"]
    assert (b"content-length", b"16") in sent[0]["headers"] and sent[1]["body"] == b'{"seconds":3600}'


@pytest.mark.parametrize(("method", "path", "query"), [("GET", "/api/live", b"seconds=0"), ("POST", "/api/live", b""),
                                                       ("GET", "/api/other", b""), ("GET", "/api/live", b"x=1")])
def test_anything_else_goes_on_to_the_app(method, path, query):
    sent, passed_on = _call(fast_path(), method, path, query)
    assert sent == [] and passed_on == [path]


@pytest.mark.parametrize("query", ["seconds=0", "seconds=3601", "seconds=abc", "seconds=060000"])
def test_the_service_still_refuses_invalid_live_queries_as_documented(query):
    # Invalid queries never reach Redis: FastAPI answers them (no server needed).
    with TestClient(build_app(AggregatorSettings(), run_worker=False)) as client:
        assert client.get(f"/api/live?{query}").status_code == 422


@pytest.mark.parametrize("query", ["page=0", "page_size=501", "page_size=x"])
def test_the_service_still_refuses_invalid_meters_queries_as_documented(query):
    with TestClient(build_app(AggregatorSettings(), run_worker=False)) as client:
        assert client.get(f"/api/meters?{query}").status_code == 422
