"""Specs defaulted the way the API server defaults them, from the chart's CRD (the only copy)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CRD_PATH = Path(__file__).resolve().parents[3] / "helm/smartgrid/crds/smartgrid.io_smartgridconsumers.yaml"


def crd_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the CRD's only version."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural-schema defaulting: fill missing properties that declare a default, recursively."""
    if schema.get("type") != "object" or not isinstance(value, dict):
        return value
    result = dict(value)
    for key, sub in schema.get("properties", {}).items():
        if key not in result and "default" in sub:
            result[key] = copy.deepcopy(sub["default"])
        if key in result:
            result[key] = apply_defaults(sub, result[key])
    return result


def defaulted_spec(**overrides: Any) -> dict[str, Any]:
    """A minimal valid spec, defaulted; ``overrides`` are merged one level deep."""
    spec: dict[str, Any] = {
        "kafka": {"bootstrapServers": "kafka:9092"},
        "influxdb": {"url": "http://influxdb:8086"},
        "redis": {"url": "redis://redis:6379/0"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            spec[key] = {**spec.get(key, {}), **value}
        else:
            spec[key] = value
    return apply_defaults(crd_schema()["properties"]["spec"], spec)
