"""scripts/images and the build arguments it gives the Dockerfiles, checked without podman: the
images it knows are the product's, the ingest Dockerfile's prebuilt-wheel target is its default
image with another venv, and the default build (what a user's CI runs) is the one it always was."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "images"


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
    for name in ("operator", "ingest", "aggregator", "writer", "simulator", "--pull=never", "runtime-prebuilt"):
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
