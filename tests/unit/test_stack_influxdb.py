"""scripts/stack's choice of InfluxDB (single 1.8.10, cluster, system) and what a state dir
remembers of it. No server is started: the commands here answer before any would be."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

STACK = Path(__file__).resolve().parents[2] / "scripts" / "stack"


def stack(state: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTGRID_", "INFLUXDB_"))}
    return subprocess.run(
        [str(STACK), *args], env=clean | {"SMARTGRID_STATE_DIR": str(state), "SMARTGRID_INFLUXDB_PORT": "28086", **env},
        capture_output=True, text=True, timeout=60,
    )


def exports(output: str) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in output.splitlines() if line.startswith("export "))


def test_a_new_state_dir_runs_one_node_of_the_version_the_chart_ships(tmp_path):
    env = exports(stack(tmp_path, "env").stdout)
    assert env["INFLUXDB_URL"] == "http://127.0.0.1:28086"
    assert "SMARTGRID_INFLUXDB_REPLICATION" not in env
    assert "influxdb " in stack(tmp_path, "status").stdout


@pytest.mark.parametrize("how", [("--influxdb", "cluster"), ("--influxdb=cluster",), ()])
def test_a_cluster_gives_its_data_nodes_and_replication_to_the_services(tmp_path, how):
    extra = {} if how else {"SMARTGRID_INFLUXDB": "cluster"}
    env = exports(stack(tmp_path, *how, "env", **extra).stdout)
    assert env["INFLUXDB_URL"] == "http://127.0.0.1:28086,http://127.0.0.1:28096"
    assert env["SMARTGRID_INFLUXDB_REPLICATION"] == "2"
    status = stack(tmp_path, *how, "status", **extra).stdout
    assert [line.split()[0] for line in status.splitlines()] == [
        "kafka", "influxdb-meta", "influxdb-data1", "influxdb-data2", "redis"]
    assert "http://127.0.0.1:28091" in status  # the meta node's API: P + 5


def test_a_state_dir_remembers_its_cluster_and_refuses_to_become_a_single_node(tmp_path):
    (tmp_path / "influxdb.kind").write_text("cluster\n")
    assert "28096" in exports(stack(tmp_path, "env").stdout)["INFLUXDB_URL"]  # no option needed
    refused = stack(tmp_path, "up", SMARTGRID_INFLUXDB="single")
    assert refused.returncode == 1
    assert "holds an InfluxDB 'cluster'" in refused.stderr and "SMARTGRID_INFLUXDB=cluster" in refused.stderr


def test_a_state_dir_from_before_the_choice_keeps_the_influxd_on_path(tmp_path):
    (tmp_path / "influxdb" / "data").mkdir(parents=True)  # made by the script before the record
    assert exports(stack(tmp_path, "env").stdout)["INFLUXDB_URL"] == "http://127.0.0.1:28086"
    refused = stack(tmp_path, "up", SMARTGRID_INFLUXDB="cluster")
    assert refused.returncode == 1 and "holds an InfluxDB 'system'" in refused.stderr


@pytest.mark.parametrize("args", [("--influxdb", "enterprise", "env"), ("env",)])
def test_an_unknown_kind_is_refused_naming_the_choices(tmp_path, args):
    result = stack(tmp_path, *args, **({} if "--influxdb" in args else {"SMARTGRID_INFLUXDB": "enterprise"}))
    assert result.returncode != 0
    assert "single, cluster, system" in result.stderr


@pytest.mark.parametrize(("name", "value"), [("SMARTGRID_INFLUXDB_GOGC", "fast"), ("SMARTGRID_INFLUXDB_GOMEMLIMIT", "2GB")])
def test_a_gc_setting_influxd_would_ignore_stops_up_before_anything_starts(tmp_path, name, value):
    refused = stack(tmp_path, "up", **{name: value})
    assert refused.returncode == 1
    assert f"{name}={value!r}" in refused.stderr and "set it to" in refused.stderr
    assert not (tmp_path / "run").exists()  # no server was started
