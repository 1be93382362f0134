"""scripts/images and the build arguments it gives the Dockerfiles, checked without podman: the
images it knows are the product's, the ingest Dockerfile's prebuilt-wheel target is its default
image with another venv, and the default build (what a user's CI runs) is the one it always was.
The local stand-ins of the third-party images (images/deps): what their start check runs is what
the chart's templates give those workloads, and ci/local-deps-values.yaml points the chart at them."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "images"
CHART = ROOT / "helm" / "smartgrid"
TEMPLATES = CHART / "templates"


def load_script():
    loader = importlib.machinery.SourceFileLoader("scripts_images", str(SCRIPT))
    spec = importlib.util.spec_from_loader("scripts_images", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def stages(text: str) -> dict[str, str]:
    """Stage name (or the index of an unnamed stage) -> its text, from its FROM line on."""
    found = {}
    for index, part in enumerate(re.split(r"(?m)^(?=FROM )", text)[1:]):
        name = re.match(r"FROM \S+(?: AS (\S+))?", part).group(1) or str(index)
        found[name] = part.split("\n# ----")[0].strip()
    return found


def test_help_names_every_image_and_needs_no_podman():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    for name in ("operator", "ingest", "aggregator", "writer", "simulator", "--pull=never", "runtime-prebuilt",
                 "kafka", "redis", "influxdb", "busybox", "product", "deps", "all"):
        assert name in result.stdout


def test_script_builds_every_dockerfile_of_the_product():
    script = load_script()
    shipped = {str(p.relative_to(ROOT)) for p in [*ROOT.glob("services/*/Dockerfile"), ROOT / "operator/Dockerfile"]}
    assert set(script.DOCKERFILES.values()) == shipped
    assert set(script.IMPORTS) == set(script.DOCKERFILES)


def test_every_dockerfile_takes_the_base_and_uv_as_build_arguments():
    script = load_script()
    for dockerfile in script.DOCKERFILES.values():
        text = (ROOT / dockerfile).read_text()
        assert re.search(r"(?m)^ARG PYTHON_IMAGE=python:3\.11\S*-bookworm$", text), dockerfile
        assert re.search(r"(?m)^ARG UV_IMAGE=ghcr\.io/astral-sh/uv:\S+$", text), dockerfile
        assert "FROM ${PYTHON_IMAGE}" in text and "FROM ${UV_IMAGE} AS uv" in text, dockerfile


def test_uv_of_the_dockerfiles_is_the_one_scripts_uv_pins():
    script = load_script()
    pinned = re.search(r"(?m)^uv_version=(\S+)", (ROOT / "scripts/uv").read_text()).group(1)
    for dockerfile in script.DOCKERFILES.values():
        assert script.dockerfile_default(dockerfile, "UV_IMAGE").endswith(f":{pinned}"), dockerfile


def test_ingest_default_image_still_compiles_the_extension_in_its_build_stage():
    found = stages((ROOT / "services/ingest/Dockerfile").read_text())
    final = found[str(len(found) - 1)]
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "rustup" in found["build"] and "uv sync --frozen --no-dev --no-editable --package smartgrid-ingest" in found["build"]
    assert "ingest-wheel" not in found["build"] and "ingest-wheel" not in final


def test_ingest_prebuilt_target_is_the_default_image_with_the_wheels_venv():
    found = stages((ROOT / "services/ingest/Dockerfile").read_text())
    final = found[str(len(found) - 1)]
    prebuilt = found["runtime-prebuilt"]
    assert prebuilt.replace("FROM ${PYTHON_IMAGE} AS runtime-prebuilt", "FROM ${PYTHON_IMAGE}").replace(
        "--from=build-prebuilt", "--from=build") == final
    assert "rustup" not in found["build-prebuilt"] and "cargo" not in found["build-prebuilt"]
    assert "COPY --from=ingest-wheel" in found["build-prebuilt"]


def test_copied_paths_are_what_the_ingest_dockerfile_sends():
    paths = load_script().copied_paths("services/ingest/Dockerfile")
    assert {"uv.lock", "services/common", "services/ingest", "operator/pyproject.toml"} <= set(paths)
    assert not any(p.startswith(("/", "--")) for p in paths)


# ---- the stand-ins of the third-party images ----------------------------------------------------

def demo_values() -> dict:
    return yaml.safe_load((CHART / "ci/demo-values.yaml").read_text())


def test_names_select_every_image_by_default_the_product_or_the_stand_ins_by_group():
    script = load_script()
    assert script.selected([]) == script.selected(["all"])
    assert script.selected(["product"]) == list(script.DOCKERFILES)
    assert script.selected(["deps"]) == ["kafka", "redis", "influxdb", "busybox"]
    assert script.selected(["all"]) == [*script.DOCKERFILES, "kafka", "redis", "influxdb", "busybox"]
    assert script.selected(["writer", "kafka"]) == ["writer", "kafka"]
    # InfluxDB and busybox are checked with each other.
    assert script.selected(["busybox"]) == ["busybox", "influxdb"]
    with pytest.raises(SystemExit):
        script.selected(["zookeeper"])


def test_every_stand_in_has_a_dockerfile_that_says_what_it_stands_in_for():
    script = load_script()
    assert sorted(p.name for p in (ROOT / script.DEPS_DIR).iterdir()) == sorted(script.DEPS)
    for name, tag in script.DEPS.items():
        text = (ROOT / script.DEPS_DIR / name / "Dockerfile").read_text()
        assert text.startswith(f"# Local stand-in for {script.UPSTREAM[name]}, for machines that reach no container registry"), name
        assert tag in text, name
        assert re.search(r"(?m)^ARG BASE_IMAGE=localhost/smartgrid/python:3\.11-bookworm$", text), name
        # Every file a COPY takes from the build context (the stand-in's directory) is there.
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
                for source in [w for w in words[1:-1] if not w.startswith("--")]:
                    assert (ROOT / script.DEPS_DIR / name / source).exists(), f"{name}: {source}"


def test_stand_ins_are_tagged_with_the_upstream_versions_the_chart_defaults_name():
    script = load_script()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults = {"kafka": values["kafka"]["image"], "redis": values["redis"]["image"],
                "influxdb": values["influxdb"]["image"], "busybox": values["tests"]["image"]}
    for name, image in defaults.items():
        assert f"{image['repository']}:{image['tag']}" == script.UPSTREAM[name]
        # The tag of the stand-in is the upstream version (without the -alpine variant).
        assert script.DEPS[name].endswith(":" + image["tag"].removesuffix("-alpine"))
    assert script.KAFKA_VERSION == values["kafka"]["image"]["tag"]
    assert script.INFLUXDB_VERSION == values["influxdb"]["image"]["tag"].removesuffix("-alpine")


def test_local_deps_values_point_the_chart_at_the_stand_ins_and_change_nothing_else():
    script = load_script()
    values = yaml.safe_load((CHART / "ci/local-deps-values.yaml").read_text())
    sections = {"kafka": "kafka", "redis": "redis", "influxdb": "influxdb", "busybox": "tests"}
    assert set(values) == set(sections.values())
    for name, section in sections.items():
        assert values[section] == {"image": dict(zip(("repository", "tag"), script.DEPS[name].rsplit(":", 1)))}


def test_the_charts_backends_set_no_pull_policy_so_a_fixed_tag_is_used_if_present():
    for template in ("kafka.yaml", "redis.yaml", "influxdb.yaml", "tests/test-connection.yaml"):
        assert "imagePullPolicy" not in (TEMPLATES / template).read_text(), template


def test_kafka_check_runs_with_the_environment_of_the_kafka_template():
    script = load_script()
    text = (TEMPLATES / "kafka.yaml").read_text()
    env = {}
    for name, value in re.findall(r"- \{name: (KAFKA_\w+), value: (.+?)\}\n", text):
        env[name] = value.strip('"')
    env.update(re.findall(r"- name: (KAFKA_\w+)\n\s+value: (.+)\n", text))
    rendered = {
        '{{ .Values.kafka.partitions | quote }}': str(demo_values()["kafka"]["partitions"]),
        'PLAINTEXT://{{ include "smartgrid.kafkaBootstrap" . }}': "PLAINTEXT://smartgrid-kafka.default.svc:9092",
    }
    env = {k: rendered.get(v, v) for k, v in env.items()}
    assert env == script.CHART_KAFKA_ENV
    assert "containerPort: 9092" in text and "mountPath: /var/lib/kafka/data" in text
    assert "command:" not in text and "args:" not in text, "the check runs the image's own command"


def test_redis_and_influxdb_checks_run_the_templates_arguments_and_command():
    script = load_script()
    redis = (TEMPLATES / "redis.yaml").read_text()
    args = yaml.safe_load(re.search(r"(?m)^\s+args: (\[.*\])$", redis).group(1))
    assert args == script.CHART_REDIS_ARGS
    assert "exec: {command: [redis-cli, ping]}" in redis and "mountPath: /data" in redis
    influxdb = (TEMPLATES / "influxdb.yaml").read_text()
    command = yaml.safe_load(re.search(r"(?m)^\s+command: (\[influxd.*\])$", influxdb).group(1))
    assert command == script.CHART_INFLUXDB_COMMAND
    conf = script.chart_influxdb_conf()
    assert 'bind-address = ":8086"' in conf and 'index-version = "tsi1"' in conf and "[logging]" in conf
    assert "{{" not in conf and not conf.startswith(" ")


def template_script_matches(template: str, rendered: str) -> None:
    """Every line of a template's shell script (`- |` block) is a line of the rendered one, with
    each {{ ... }} standing for any text; range/end lines are left out."""
    text = (TEMPLATES / template).read_text()
    block = re.search(r"(?m)^( +)- \|\n((?:\1  .*\n)+)", text)
    lines = [line.strip() for line in block.group(2).splitlines()]
    rendered_lines = [line.strip() for line in rendered.splitlines()]
    for line in lines:
        if re.fullmatch(r"\{\{-? (range|end|if|else).*\}\}", line):
            continue
        pattern = "".join(".*" if part.startswith("{{") else re.escape(part)
                          for part in re.split(r"(\{\{.*?\}\})", line))
        assert any(re.fullmatch(pattern, r) for r in rendered_lines), f"{template}: {line}"


def test_influxdb_init_and_helm_test_scripts_of_the_check_are_the_templates():
    script = load_script()
    template_script_matches("influxdb.yaml", script.CHART_INFLUXDB_INIT)
    # The check's test script leaves out the operator's and the aggregator's URLs (not running there).
    text = (TEMPLATES / "tests/test-connection.yaml").read_text()
    assert 'check() { echo "checking $1"; wget -q -T 5 -O /dev/null "$1"; }' in text
    assert script.CHART_TEST_SCRIPT.splitlines()[0] in text
    assert "check http://{{ $fullname }}-influxdb:8086/ping" in text
    values = demo_values()["influxdb"] | yaml.safe_load((CHART / "values.yaml").read_text())["influxdb"]
    for policy in values["retentionPolicies"]:
        assert f'"{policy["name"]}" ON "{values["database"]}" DURATION {policy["duration"]}' in script.CHART_INFLUXDB_INIT


def test_checks_run_as_the_uids_and_root_filesystems_of_the_templates():
    script = load_script()
    files = {"kafka": "kafka.yaml", "redis": "redis.yaml", "influxdb": "influxdb.yaml",
             "busybox": "tests/test-connection.yaml"}
    for name, template in files.items():
        text = (TEMPLATES / template).read_text()
        uids = set(re.findall(r'smartgrid\.podSecurityContext" \(dict "uid" (\d+)\)', text))
        assert uids == {str(script.CHART_UIDS[name])}, name
        read_only = "--read-only" in script.as_chart_runs(name, read_only=name != "kafka")
        assert ('(dict "readOnly" false)' in text) == (not read_only), name


def test_stand_in_scripts_are_executable_and_parse():
    deps = ROOT / "images/deps"
    scripts = [deps / "kafka/docker/run", deps / "kafka/bin/kafka-run-class.sh", deps / "kafka/bin/kafka-server-start.sh",
               deps / "redis/docker-entrypoint.sh", deps / "influxdb/entrypoint.sh"]
    for path in scripts:
        assert os.access(path, os.X_OK), path
        shell = "sh" if path.read_text().startswith("#!/bin/sh") else "bash"
        result = subprocess.run([shutil.which(shell) or shell, "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}: {result.stderr}"


def test_kafka_tools_name_a_script_and_a_main_class_each():
    lines = [line.split() for line in (ROOT / "images/deps/kafka/tools").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert all(len(words) == 2 and words[0].endswith(".sh") and re.fullmatch(r"[\w.]+", words[1]) for words in lines)
    scripts = {words[0] for words in lines}
    assert {"kafka-topics.sh", "kafka-storage.sh", "kafka-console-producer.sh", "kafka-console-consumer.sh"} <= scripts


def helm_binary() -> str | None:
    cache = Path(os.environ.get("SMARTGRID_CACHE_DIR", Path.home() / ".cache" / "smartgrid"))
    candidate = cache / "k8s" / "bin" / "helm"
    return str(candidate) if candidate.is_file() else shutil.which("helm")


def test_check_runs_what_helm_renders_for_the_demo_values_with_the_stand_ins():
    helm = helm_binary()
    if not helm:
        pytest.skip("no helm binary (scripts/k8s install builds it)")
    script = load_script()
    rendered = subprocess.run(
        [helm, "template", "smartgrid", str(CHART), "-n", "default", "-f", str(CHART / "ci/demo-values.yaml"),
         "-f", str(CHART / "ci/local-deps-values.yaml")], capture_output=True, text=True, timeout=60, check=True).stdout
    containers = {}
    for doc in filter(None, yaml.safe_load_all(rendered)):
        pod = doc["spec"] if doc["kind"] == "Pod" else doc.get("spec", {}).get("template", {}).get("spec")
        for container in (pod or {}).get("containers", []):
            containers[container["name"]] = (container, pod)
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "smartgrid-influxdb":
            assert doc["data"]["influxdb.conf"] == script.chart_influxdb_conf()
    images = {name: containers[name][0]["image"] for name in ("kafka", "redis", "influxdb", "init", "check")}
    assert images == {"kafka": script.DEPS["kafka"], "redis": script.DEPS["redis"], "influxdb": script.DEPS["influxdb"],
                      "init": script.DEPS["influxdb"], "check": script.DEPS["busybox"]}
    assert {e["name"]: e["value"] for e in containers["kafka"][0]["env"]} == script.CHART_KAFKA_ENV
    assert containers["redis"][0]["args"] == script.CHART_REDIS_ARGS
    assert containers["influxdb"][0]["command"] == script.CHART_INFLUXDB_COMMAND
    assert containers["init"][0]["command"] == ["/bin/sh", "-ec", script.CHART_INFLUXDB_INIT]
    test_lines = containers["check"][0]["command"][2].splitlines()
    assert set(script.CHART_TEST_SCRIPT.splitlines()) <= set(test_lines)
    for name, uid in [("kafka", 1000), ("redis", 999), ("influxdb", 1000), ("init", 1000), ("check", 65534)]:
        container, pod = containers[name]
        assert "imagePullPolicy" not in container, name
        assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == uid, name
