"""The InfluxDB client with several URLs, against the real InfluxDB of the stack.

A node that refuses connections is a real closed port here (nothing listens on it): the client
must leave it out, write everything through the others, say so (``degraded``, metrics), and never
show a URL's userinfo. The cluster's own answers (500 partial writes, a killed data node) are in
test_influx_cluster.py.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from smartgrid_common.influx import InfluxClient, InfluxNodeMetrics, InfluxUnavailable
from smartgrid_common.settings import InfluxSettings

from ingest_harness import free_port

pytestmark = pytest.mark.integration

INFLUX = os.environ.get("INFLUXDB_URL", "http://127.0.0.1:8086").split(",")[0]


@pytest.fixture
def database(stack):
    name = f"test_client_{uuid.uuid4().hex[:8]}"
    yield name
    httpx.post(f"{INFLUX}/query", data={"q": f'DROP DATABASE "{name}"'}, timeout=10)


def client_for(urls: str, database: str, **extra: str) -> InfluxClient:
    return InfluxClient(InfluxSettings(**{
        "INFLUXDB_URL": urls, "INFLUXDB_DATABASE": database, "INFLUXDB_RETRY_INTERVAL": "200ms",
        "SMARTGRID_INFLUXDB_TIMEOUT": "3s", **extra,
    }))


def body(start: int, count: int) -> bytes:
    return "".join(f"energy_consumption,meter_id=m{i} consumption_kwh={i}.5 {1_795_773_600_000 + i}\n"
                   for i in range(start, start + count)).encode()


def count(client: InfluxClient) -> int:
    results = client.query("SELECT count(consumption_kwh) FROM raw_data.energy_consumption")
    series = results[0].get("series", [])
    return series[0]["values"][0][1] if series else 0


def test_writes_are_spread_over_the_urls(database):
    # Two URLs of the same real node (by address and by name): the spread is what is checked.
    other = INFLUX.replace("127.0.0.1", "localhost")
    client = client_for(f"{INFLUX},{other}", database)
    try:
        client.ensure_schema()
        for batch in range(10):
            assert client.write(body(batch * 100, 100), "raw_data") == []
        assert [node.writes for node in client.nodes] == [5, 5]
        assert count(client) == 1000
        assert client.degraded() is None
    finally:
        client.close()


def test_a_node_that_refuses_connections_is_left_out_and_the_others_take_every_write(database, caplog):
    dead = f"http://127.0.0.1:{free_port()}"
    client = client_for(f"{dead},{INFLUX}", database)
    registry = CollectorRegistry()
    registry.register(InfluxNodeMetrics(client))
    stop = threading.Event()
    try:
        client.ensure_schema()
        for batch in range(20):
            assert client.write_until_done(body(batch * 50, 50), "raw_data", stop) == []
        assert count(client) == 1000
        dead_node, live_node = client.nodes
        assert live_node.writes == 20 and dead_node.writes == 0
        # Left out after its first refusal, then retried on its own backoff (200 ms doubling),
        # not on every write.
        assert 1 <= dead_node.failures < 10
        # A dead node is out while its pause lasts. A write whose turn starts at it tries it again
        # once the pause ended, which leaves it out for its next, longer pause: right after such
        # a write it is out. (Read once per write: its pause may end between two reads.)
        degraded, metrics = None, ""
        for batch in range(20, 40):
            assert client.write_until_done(body(batch * 50, 50), "raw_data", stop) == []
            degraded, metrics = client.degraded(), generate_latest(registry).decode()
            if degraded is not None:
                break
        assert degraded is not None and dead in degraded and "1 of 2" in degraded
        assert f'smartgrid_influxdb_node_up{{node="{dead}"}} 0.0' in metrics
        assert f'smartgrid_influxdb_node_up{{node="{INFLUX}"}} 1.0' in metrics
        assert f'smartgrid_influxdb_node_writes_total{{node="{INFLUX}"}} {batch + 1}.0' in metrics
        assert any("influxdb node left out" in r.getMessage() for r in caplog.records)
    finally:
        client.close()


def test_with_every_node_down_a_write_raises_and_names_no_credentials(database, caplog):
    caplog.set_level(logging.DEBUG)
    dead = [f"http://writer:s3cret@127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    client = client_for(",".join(dead), database)
    try:
        with pytest.raises(InfluxUnavailable) as raised:
            client.write(body(0, 1), "raw_data")
        assert "s3cret" not in str(raised.value) and "writer:" not in str(raised.value)
        assert dead[1] in str(raised.value) and dead[0].replace("writer:s3cret@", "") in str(raised.value)
        # Every node out: the next write still tries one (the one whose pause ends first).
        with pytest.raises(InfluxUnavailable):
            client.write(body(0, 1), "raw_data")
        assert client.degraded() is None  # not degraded: down (the write path reports that)
        logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
        assert "s3cret" not in logged
    finally:
        client.close()


def test_a_node_back_after_its_pause_takes_its_share_again(database):
    port = free_port()
    client = client_for(f"http://127.0.0.1:{port},{INFLUX}", database)
    try:
        client.ensure_schema()
        assert client.write(body(0, 10), "raw_data") == []
        assert client.nodes[0].failures >= 1 and client.nodes_out()
        # The same port now answers: a proxy to the real node (a node that came back).
        proxy = _Proxy(port, INFLUX)
        try:
            client.nodes[0].out_until = 0.0  # its pause is over
            for batch in range(4):
                assert client.write(body(100 + batch * 10, 10), "raw_data") == []
            assert client.nodes[0].writes == 2 and client.nodes_out() == []
        finally:
            proxy.close()
        assert count(client) == 50
    finally:
        client.close()


class _Proxy:
    """A TCP forwarder on ``port`` to the real InfluxDB: the node that was down is back."""

    def __init__(self, port: int, target: str) -> None:
        import socket

        host, _, target_port = target.removeprefix("http://").partition(":")
        self.target = (host, int(target_port or 80))
        self.server = socket.create_server(("127.0.0.1", port))
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.closed.set()
        self.server.close()


def test_a_write_a_node_took_and_did_not_answer_is_counted_unsettled_a_refused_one_is_not(database):
    """A request that timed out may still be stored later (a cluster's data node holds it): the
    client counts it, so that a caller that overwrites points can write them again later."""
    import socket

    silent = socket.create_server(("127.0.0.1", 0))  # accepts, reads nothing, never answers
    silent.listen(8)
    refused = f"http://127.0.0.1:{free_port()}"
    client = client_for(f"http://127.0.0.1:{silent.getsockname()[1]},{refused}", database, SMARTGRID_INFLUXDB_TIMEOUT="500ms")
    try:
        with pytest.raises(InfluxUnavailable):
            client.write(body(0, 1), "raw_data")
        assert client.unsettled == 1  # the silent node's timeout; the refused connection is not one
        assert client.nodes[0].failures == 1 and client.nodes[1].failures == 1
    finally:
        client.close()
        silent.close()
