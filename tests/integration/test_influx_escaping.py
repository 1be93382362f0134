"""Line-protocol escaping against the real InfluxDB of the stack (1.8.10, what the chart ships).

The unit tests (tests/unit/ingest/test_ingest_hotpath.py) check the escaping with a reference
parser written from how InfluxDB 1.x scans a line. Here the same tricky values go through the real
server: the ingest hot path's lines and the writer's tags are written, and InfluxDB must give back
exactly the values that went in, each one tag (no extra tag, no field smuggled in).
"""

from __future__ import annotations

import json
import os
import uuid

from pathlib import Path

import httpx
import pytest
import yaml
from ingest._hotpath import convert_one
from writer.builders import escape_tag

pytestmark = pytest.mark.integration

INFLUX = os.environ.get("INFLUXDB_URL", "http://127.0.0.1:8086").split(",")[0]
REPO = Path(__file__).resolve().parents[2]

TRICKY = [
    "x,region=evil",
    "has space",
    "a=b",
    'quote"d',
    "back\\slash",
    "double\\\\backslash",
    "\\,\\=\\ x",
    "a\\\\,b",
    "ünïcødé-zähler-東京",
    "emoji-⚡",
    "x status=fault consumption_kwh=9",
    "'single'",
    "trailing space ",
    " leading",
]


@pytest.fixture
def database(stack):
    name = f"test_escaping_{uuid.uuid4().hex[:8]}"
    query(f'CREATE DATABASE "{name}"', method="POST")
    yield name
    query(f'DROP DATABASE "{name}"', method="POST")


def query(statement: str, database: str | None = None, method: str = "GET") -> list[dict]:
    params = {"q": statement, **({"db": database} if database else {})}
    if method == "POST":
        response = httpx.post(f"{INFLUX}/query", data=params, timeout=30)
    else:
        response = httpx.get(f"{INFLUX}/query", params=params, timeout=30)
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    return result.get("series", [])


def write(database: str, body: str, precision: str = "ms") -> httpx.Response:
    return httpx.post(
        f"{INFLUX}/write", params={"db": database, "precision": precision}, content=body.encode(), timeout=30
    )


def tag_values(database: str, measurement: str, key: str) -> set[str]:
    series = query(f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{key}"', database)
    return {row[1] for s in series for row in s["values"]}


def test_the_stack_runs_the_version_the_chart_ships(stack):
    """A state dir of `scripts/stack` made for one node (`single`, the default) runs 1.8.10; one
    made before that choice existed keeps the influxd on PATH (docs/local-stack.md)."""
    version = httpx.get(f"{INFLUX}/ping", timeout=5).headers.get("X-Influxdb-Version", "")
    state = Path(os.environ.get("SMARTGRID_STATE_DIR") or REPO / ".state")
    kind = (state / "influxdb.kind").read_text().strip() if (state / "influxdb.kind").exists() else "?"
    print(f"InfluxDB at {INFLUX}: {version} (stack: {kind})")
    chart = yaml.safe_load((REPO / "helm/smartgrid/values.yaml").read_text())["influxdb"]["image"]["tag"]
    if kind == "single":
        assert chart.startswith(version.lstrip("v") + "-"), (version, chart)


def test_ingest_tag_values_come_back_from_influxdb_exactly_as_sent(database):
    lines = []
    for index, meter_id in enumerate(TRICKY):
        value = json.dumps({
            "meter_id": meter_id, "timestamp": 1_795_773_600_000 + index, "consumption_kwh": index + 0.5,
            "region": "a b,c=d", "status": "ok", "building_type": "x=y z",
        }).encode()
        line, reason = convert_one(value, "ms")
        assert reason is None, (meter_id, reason)
        lines.append(line if line.endswith("\n") else line + "\n")
    response = write(database, "".join(lines))
    assert response.status_code == 204, response.text
    assert tag_values(database, "energy_consumption", "meter_id") == set(TRICKY)
    assert tag_values(database, "energy_consumption", "region") == {"a b,c=d"}
    assert tag_values(database, "energy_consumption", "building_type") == {"x=y z"}
    assert tag_values(database, "energy_consumption", "status") == {"ok"}
    # One point per meter, and the only field is the one sent: nothing was smuggled in as a field.
    series = query("SELECT * FROM energy_consumption", database)
    columns = series[0]["columns"]
    assert set(columns) == {"time", "building_type", "consumption_kwh", "meter_id", "region", "status"}
    rows = [dict(zip(columns, row)) for row in series[0]["values"]]
    assert sorted((row["meter_id"], row["consumption_kwh"]) for row in rows) == sorted(
        (meter_id, index + 0.5) for index, meter_id in enumerate(TRICKY)
    )


def test_writer_tag_values_come_back_from_influxdb_exactly_as_sent(database):
    regions = [region for region in TRICKY if not region.endswith("\\")]
    body = "".join(
        f"region_consumption,region={escape_tag(region)} total_kwh={index}.0 {1_795_773_600 + index}\n"
        for index, region in enumerate(regions)
    )
    response = write(database, body, precision="s")
    assert response.status_code == 204, response.text
    assert tag_values(database, "region_consumption", "region") == set(regions)


def test_a_tag_ending_in_a_backslash_cannot_be_carried_which_is_why_ingest_dead_letters_it(database):
    """InfluxDB reads ``\\ `` after such a value as an escaped space: the value is never stored as
    sent (the write is refused, or the tag swallows what follows). The hot path refuses it instead."""
    response = write(database, "energy_consumption,meter_id=tail\\ consumption_kwh=1.0 1795773600000\n")
    stored = tag_values(database, "energy_consumption", "meter_id") if response.status_code == 204 else set()
    assert "tail\\" not in stored
    line, reason = convert_one(json.dumps({
        "meter_id": "tail\\", "timestamp": 1_795_773_600_000, "consumption_kwh": 1.0, "region": "r", "status": "ok",
    }).encode(), "ms")
    assert line is None and "backslash" in reason


def test_numbers_written_as_sent_are_stored_as_the_floats_the_hot_path_folded(database):
    """A plain decimal goes into line protocol as it was sent (an integer too, without ``i``):
    InfluxDB must store it as a float field, the same value the decoder read, in one series
    with values that were re-formatted (an exponent)."""
    sent = ["5", "0", "0.0728", "0.07280000000000000001", "123456789012345678901234567890", "2.5e-3", "1E2"]
    lines = []
    for index, number in enumerate(sent):
        value = (
            '{"meter_id":"m-%d","timestamp":%d,"consumption_kwh":%s,"region":"r","status":"ok","latitude":%s}'
            % (index, 1_795_773_600_000 + index, number, "-0" if index == 0 else "12")
        ).encode()
        line, reason = convert_one(value, "ms")
        assert reason is None, (number, reason)
        lines.append(line)
    assert "consumption_kwh=5," in lines[0] and "consumption_kwh=0.0025," in lines[5]
    response = write(database, "".join(lines))
    assert response.status_code == 204, response.text
    series = query("SELECT consumption_kwh, latitude FROM energy_consumption", database)[0]
    assert [row[1] for row in series["values"]] == [float(number) for number in sent]
    assert series["values"][0][2] == 0.0
    types = query("SHOW FIELD KEYS FROM energy_consumption", database)[0]["values"]
    assert dict(types) == {"consumption_kwh": "float", "latitude": "float"}
