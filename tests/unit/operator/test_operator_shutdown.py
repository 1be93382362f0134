"""An ingest pod's SIGTERM drain fits in its terminationGracePeriodSeconds: both come from the
custom resource's ``ingest.shutdownTimeout``."""

from __future__ import annotations

import math

import pytest
from ingest.supervisor import HARD_STOP_GRACE
from sgc_specs import defaulted_spec
from smartgrid_common.settings import parse_duration

from smartgrid_operator.builders import build_config_data, build_deployment, build_ingest_statefulset


def ingest_pod(spec) -> dict:
    return build_ingest_statefulset("grid", "ns", spec, 32)["spec"]["template"]["spec"]


@pytest.mark.parametrize("timeout", ["25s", "90s", "2m", "1500ms"])
def test_the_ingest_pods_grace_period_covers_the_shutdown_timeout_and_the_hard_stop(timeout):
    spec = defaulted_spec(ingest={"shutdownTimeout": timeout})
    grace = ingest_pod(spec)["terminationGracePeriodSeconds"]
    assert build_config_data(spec)["SMARTGRID_SHUTDOWN_TIMEOUT"] == timeout
    # Supervisor.stop returns within timeout + HARD_STOP_GRACE + 2 s; a few seconds more for the exit.
    assert grace >= parse_duration(timeout) + HARD_STOP_GRACE + 2 + 2
    assert grace == math.ceil(parse_duration(timeout)) + 10


def test_the_default_shutdown_timeout_is_the_ingests_own_default():
    spec = defaulted_spec()
    assert spec["ingest"]["shutdownTimeout"] == "25s"  # SMARTGRID_SHUTDOWN_TIMEOUT's default
    assert ingest_pod(spec)["terminationGracePeriodSeconds"] == 35


def test_the_aggregator_and_writer_keep_the_kubernetes_default_grace_period():
    spec = defaulted_spec(ingest={"shutdownTimeout": "5m"})
    for component in ("aggregator", "writer"):
        assert build_deployment("grid", "ns", spec, component)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30
