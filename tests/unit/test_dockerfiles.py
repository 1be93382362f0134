"""The images' Dockerfiles, checked statically (no Docker engine runs here; the kind suite builds
them where one does): multi-stage, pinned bases, non-root, no compilers in the final stage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted([*ROOT.glob("services/*/Dockerfile"), ROOT / "operator" / "Dockerfile"])


def stages(text: str) -> list[str]:
    return re.split(r"(?m)^FROM ", text)[1:]


def test_every_service_and_the_operator_has_a_dockerfile():
    names = {path.parent.name for path in DOCKERFILES}
    assert {"ingest", "aggregator", "writer", "simulator", "operator"} <= names


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_is_multi_stage_pinned_non_root_and_compiler_free(path):
    text = path.read_text()
    args = dict(re.findall(r"(?m)^ARG (\w+)=(\S+)", text))
    images = [value for name, value in args.items() if name.endswith("_IMAGE")]
    assert images and all(re.search(r":\d+\.\d+(\.\d+)?", image) for image in images), images
    parts = stages(text)
    assert len(parts) >= 2, "multi-stage"
    final = parts[-1]
    user = re.search(r"(?m)^USER (\S+)", final)
    assert user and not user.group(1).startswith(("root", "0")), "the final stage runs as a non-root user"
    assert "PYTHONUNBUFFERED=1" in final
    for tool in ("build-essential", "rustup", "cargo", "gcc", "apt-get install"):
        assert tool not in final, f"{tool} in the final image"
    assert re.search(r'(?m)^ENTRYPOINT \["python", "-m", "\w+"\]', final)
