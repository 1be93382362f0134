"""INFLUXDB_URL as a list of data nodes, credentials in a URL never shown, consistency and replication."""

from __future__ import annotations

import pytest
from smartgrid_common.influx import InfluxClient
from smartgrid_common.settings import (
    ConfigError,
    InfluxSettings,
    load_settings,
    parse_influx_urls,
    redact_url,
    redact_urls,
)


def test_a_url_is_shown_without_its_userinfo():
    assert redact_url("http://user:secret@node-1:8086") == "http://node-1:8086"
    assert redact_url("https://token@node-1/prefix") == "https://node-1/prefix"
    assert redact_url("http://node-1:8086") == "http://node-1:8086"
    assert redact_url("node-1:8086") == "node-1:8086"


def test_every_url_in_a_text_loses_its_userinfo():
    text = "InfluxDB at http://u:p@a:8086 unreachable; http://b:8086 too; redis://:pw@r:6379/0"
    assert redact_urls(text) == "InfluxDB at http://a:8086 unreachable; http://b:8086 too; redis://r:6379/0"


def test_comma_separated_urls_are_the_data_nodes_and_userinfo_becomes_credentials():
    nodes = parse_influx_urls(" http://u:p%40ss@data-1:8086/ , http://data-2:8086,")
    assert nodes == [("http://data-1:8086", ("u", "p@ss")), ("http://data-2:8086", None)]


@pytest.mark.parametrize("value", ["", " , ", "data-1:8086", "ftp://data-1", "http://:8086", "http://data-1:port"])
def test_a_value_that_is_no_list_of_urls_stops_start_up_saying_what_to_write(value, capsys):
    with pytest.raises(ConfigError) as stopped:
        load_settings(InfluxSettings, INFLUXDB_URL=value)
    assert "INFLUXDB_URL" in str(stopped.value)


def test_a_bad_url_with_a_password_is_reported_without_the_password(capsys):
    with pytest.raises(ConfigError) as stopped:
        load_settings(InfluxSettings, INFLUXDB_URL="http://admin:hunter2@data-1:86x6")
    message = str(stopped.value) + capsys.readouterr().err
    assert "INFLUXDB_URL" in message and "data-1" in message
    assert "hunter2" not in message and "admin" not in message


def test_the_client_knows_every_node_by_its_url_without_credentials():
    client = InfluxClient(InfluxSettings(INFLUXDB_URL="http://u:secret@a:8086,http://b:8087"))
    try:
        assert [node.url for node in client.nodes] == ["http://a:8086", "http://b:8087"]
        assert client.url == "http://a:8086,http://b:8087"
        assert "secret" not in repr([node.url for node in client.nodes])
        assert client.nodes[0].http.auth is not None and client.nodes[1].http.auth is None
    finally:
        client.close()


def test_explicit_credentials_win_over_those_in_a_url():
    settings = InfluxSettings(
        INFLUXDB_URL="http://u:secret@a:8086", SMARTGRID_INFLUXDB_USERNAME="writer", SMARTGRID_INFLUXDB_PASSWORD="pw"
    )
    client = InfluxClient(settings)
    try:
        request = client.nodes[0].http.build_request("GET", "/ping")
        flow = client.nodes[0].http.auth.sync_auth_flow(request)
        assert next(flow).headers["Authorization"] == "Basic d3JpdGVyOnB3"  # writer:pw
    finally:
        client.close()


def test_consistency_defaults_to_one_and_takes_only_influxdb_levels(capsys):
    assert InfluxSettings().influxdb_consistency == "one"
    for level in ("any", "one", "quorum", "all"):
        assert InfluxSettings(SMARTGRID_INFLUXDB_CONSISTENCY=level).influxdb_consistency == level
    with pytest.raises(ConfigError, match="SMARTGRID_INFLUXDB_CONSISTENCY"):
        load_settings(InfluxSettings, SMARTGRID_INFLUXDB_CONSISTENCY="most")


def test_replication_defaults_to_one_and_is_at_least_one(capsys):
    assert InfluxSettings().influxdb_replication == 1
    assert InfluxSettings(SMARTGRID_INFLUXDB_REPLICATION="2").influxdb_replication == 2
    with pytest.raises(ConfigError, match="SMARTGRID_INFLUXDB_REPLICATION"):
        load_settings(InfluxSettings, SMARTGRID_INFLUXDB_REPLICATION="0")
