"""The CRD's defaults and bounds are the services' own, field by field.

A field of ``spec`` that the operator passes to the services as an environment variable must
default to what the service defaults to when the variable is unset, and accept no value the
service refuses at start-up: otherwise ``helm install`` runs the product with settings the README
and the benchmarks never measured (the CRD once said a 10,000-record queue and 1,000-record reads,
ten times below the services'), or the API server admits a spec whose pods then crash-loop. The
mapping from field to variable is found by changing the field, not written here a second time.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from aggregator.settings import AggregatorSettings
from annotated_types import Ge, Gt, Le, Lt
from ingest.settings import IngestSettings
from sgc_specs import crd_schema, defaulted_spec
from smartgrid_common.settings import parse_duration
from writer.settings import WriterSettings

from smartgrid_operator.builders import build_config_data

SETTINGS = (IngestSettings, AggregatorSettings, WriterSettings)

# Defaults that differ on purpose, and why.
DIFFERENT_ON_PURPOSE = {
    # Pods are sized for several workers and a range of partitions each; a process started by hand
    # runs one worker over every partition.
    "PROCESSOR_WORKER_COUNT",
    "SMARTGRID_PARTITIONS_PER_REPLICA",
    "KAFKA_CONSUMER_COUNT",
    # The seed's group id; changing a CRD default would move running consumers to a new group
    # (their committed offsets stay under the old one).
    "KAFKA_GROUP_ID",
}


def _fields() -> dict[str, Any]:
    """Every ``pydantic`` field of the services' settings by its variable name."""
    fields: dict[str, Any] = {}
    for cls in SETTINGS:
        for field in cls.model_fields.values():
            fields.setdefault(field.validation_alias or field.alias, field)
    return fields


def _leaves(schema: dict[str, Any], path: tuple[str, ...] = ()):
    """(path, schema) of every scalar property with a default, under ``schema``."""
    for key, sub in schema.get("properties", {}).items():
        if sub.get("type") == "object":
            yield from _leaves(sub, (*path, key))
        elif "default" in sub and sub.get("type") in ("integer", "string", "number"):
            yield (*path, key), sub


def _changed(value: Any, sub: dict[str, Any]) -> Any:
    if sub.get("enum"):
        return next(v for v in sub["enum"] if v != value)
    if sub["type"] == "integer":
        return value + 1 if value + 1 <= sub.get("maximum", value + 1) else value - 1
    if sub["type"] == "number":
        return value / 2 if value else 0.5
    return "7s" if value != "7s" else "8s"


def _mapped() -> list[tuple[tuple[str, ...], dict[str, Any], str]]:
    """(CRD path, its schema, the variable it sets) for every defaulted scalar the config carries."""
    spec_schema = crd_schema()["properties"]["spec"]
    default = defaulted_spec()
    base = build_config_data(default)
    found = []
    for path, sub in _leaves(spec_schema):
        spec = copy.deepcopy(default)
        node = spec
        for key in path[:-1]:
            node = node.get(key)
            if node is None:
                break  # an optional object a minimal spec leaves out (a Secret's keys)
        if node is None:
            continue
        node[path[-1]] = _changed(node[path[-1]], sub)
        data = build_config_data(spec)
        for name in [n for n in data if data[n] != base.get(n)]:
            found.append((path, sub, name))
    return found


MAPPED = _mapped()
FIELDS = _fields()
DEFAULTED = [(path, sub, name) for path, sub, name in MAPPED if name in FIELDS and name not in DIFFERENT_ON_PURPOSE]
BOUNDED = [(path, sub, name) for path, sub, name in MAPPED if name in FIELDS and sub["type"] == "integer"]


def test_the_mapping_is_found():
    names = {name for _, _, name in DEFAULTED}
    assert {"PROCESSOR_QUEUE_SIZE", "KAFKA_BATCH_SIZE", "INFLUXDB_BATCH_SIZE", "SMARTGRID_KAFKA_FETCH_WAIT"} <= names
    assert {"PROCESSOR_WORKER_COUNT", "KAFKA_BATCH_SIZE"} <= {name for _, _, name in BOUNDED}


@pytest.mark.parametrize(("path", "sub", "name"), DEFAULTED, ids=[name for _, _, name in DEFAULTED])
def test_a_crd_default_is_the_services_default(path, sub, name):
    crd, service = sub["default"], FIELDS[name].default
    if isinstance(service, float) and isinstance(crd, str):
        crd = parse_duration(crd)
    assert str(crd).lower() == str(service).lower(), (
        f"spec.{'.'.join(path)} defaults to {sub['default']!r}, {name} to {service!r} in the services"
    )


@pytest.mark.parametrize(("path", "sub", "name"), BOUNDED, ids=[name for _, _, name in BOUNDED])
def test_a_crd_field_admits_no_value_its_service_refuses(path, sub, name):
    low = high = None
    for bound in FIELDS[name].metadata:
        if isinstance(bound, Ge):
            low = bound.ge
        elif isinstance(bound, Gt):
            low = bound.gt + 1
        elif isinstance(bound, Le):
            high = bound.le
        elif isinstance(bound, Lt):
            high = bound.lt - 1
    where = f"spec.{'.'.join(path)} ({name})"
    if low is not None:
        assert sub.get("minimum", float("-inf")) >= low, f"{where} admits values below {low}, which the service refuses"
    if high is not None:
        assert sub.get("maximum", float("inf")) <= high, f"{where} admits values above {high}, which the service refuses"
