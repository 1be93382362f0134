"""The README's commands work on a machine where uv is not on PATH (a `pip --user` install puts it
in ~/.local/bin, which a fresh shell often does not list): the Makefile and scripts/bootstrap call
uv through scripts/uv, which finds it or installs it into the project's cache."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def path_without_uv() -> str:
    """PATH with every directory that holds a `uv` left out."""
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "uv").exists())


def test_scripts_uv_runs_uv_where_path_has_none():
    env = {**os.environ, "PATH": path_without_uv()}
    assert shutil.which("uv", path=env["PATH"]) is None
    result = subprocess.run([str(REPO / "scripts" / "uv"), "--version"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("uv ")


def test_the_makefile_calls_uv_only_through_scripts_uv():
    # Without UV: `uv run` exports it (the uv running the tests), and the Makefile honours it.
    env = {key: value for key, value in os.environ.items() if key != "UV"} | {"PATH": path_without_uv()}
    dry_run = subprocess.run(["make", "-n", "unit", "run", "test"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert dry_run.returncode == 0, dry_run.stderr
    commands = [line for line in dry_run.stdout.splitlines() if "uv " in line]
    assert commands and all(line.startswith("scripts/uv ") for line in commands), commands
    bootstrap = (REPO / "scripts" / "bootstrap").read_text()
    assert "scripts/uv sync" in bootstrap and "pip install --quiet --user uv" not in bootstrap
