"""skaffold.yaml: one artifact per image, each buildable from here; the chart it deploys is valid."""

from __future__ import annotations

import re

import pytest
import yaml
from k8s_helpers import CHART, REPO, Cluster

SKAFFOLD = yaml.safe_load((REPO / "skaffold.yaml").read_text())
SERVICES = ["ingest", "aggregator", "writer", "simulator"]


def test_every_service_and_the_operator_has_one_artifact_with_an_existing_dockerfile():
    artifacts = SKAFFOLD["build"]["artifacts"]
    dockerfiles = sorted(a["docker"]["dockerfile"] for a in artifacts)
    assert dockerfiles == sorted([f"services/{s}/Dockerfile" for s in SERVICES] + ["operator/Dockerfile"])
    assert len({a["image"] for a in artifacts}) == len(artifacts)
    for artifact in artifacts:
        context = REPO / artifact["context"]
        assert context.is_dir() and context == REPO, "images build from the repository root"
        assert (context / artifact["docker"]["dockerfile"]).is_file()


@pytest.mark.parametrize("dockerfile", [f"services/{s}/Dockerfile" for s in SERVICES] + ["operator/Dockerfile"])
def test_dockerfiles_are_multi_stage_pinned_and_non_root(dockerfile: str):
    text = (REPO / dockerfile).read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert len(froms) >= 2, "multi-stage"
    for image in re.findall(r"^ARG\s+\w+_IMAGE=(\S+)", text, flags=re.M):
        assert re.search(r":\d+\.\d+", image), f"{image} is not pinned to a version"
    runtime = text[text.rindex("\nFROM ") :]
    assert "USER 10001" in runtime
    assert "PYTHONUNBUFFERED=1" in runtime
    assert not re.search(r"rustup|build-essential|gcc|cargo", runtime), "no compilers in the final image"
    for copied in re.findall(r"^COPY\s+(?!--from)(\S+)", text, flags=re.M):
        assert (REPO / copied).exists(), f"{dockerfile} copies {copied}, which does not exist"


def test_every_image_is_wired_into_the_chart_values():
    templates = SKAFFOLD["deploy"]["helm"]["releases"][0]["setValueTemplates"]
    for artifact in SKAFFOLD["build"]["artifacts"]:
        key = re.sub(r"[/.-]", "_", artifact["image"])
        assert any(key in value for value in templates.values()), f"{artifact['image']} is built but not deployed"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in templates:
        node = values
        for part in path.split("."):
            assert part in node, f"skaffold sets {path}, which values.yaml does not have"
            node = node[part]


def test_profiles_kind_and_e2e_exist_and_e2e_uses_a_ci_scenario():
    profiles = {p["name"]: p for p in SKAFFOLD["profiles"]}
    assert {"kind", "e2e"} <= set(profiles)
    files = [v for patch in profiles["e2e"]["patches"] if patch["path"].endswith("valuesFiles") for v in patch["value"]]
    assert files and all((REPO / f).is_file() for f in files)


@pytest.mark.k8s
def test_the_chart_skaffold_deploys_renders_and_the_api_server_accepts_it(cluster: Cluster):
    release = SKAFFOLD["deploy"]["helm"]["releases"][0]
    args = ["template", release["name"], str(REPO / release["chartPath"]), "--namespace", "default"]
    e2e = next(p for p in SKAFFOLD["profiles"] if p["name"] == "e2e")
    for patch in e2e["patches"]:
        if patch["path"].endswith("valuesFiles"):
            for values in patch["value"]:
                args += ["-f", str(REPO / values)]
    for key in release["setValueTemplates"]:
        args += ["--set", f"{key}=skaffold-placeholder"]
    rendered = cluster.helm(*args).stdout
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered, check=False)
    assert result.returncode == 0, result.stderr
