"""No Thread subclass in the services stores an attribute under the name of a Thread method.

``self._stop = threading.Event()`` in a ``Thread`` subclass shadows ``Thread._stop()``, which
``join()`` calls: the join raises ``TypeError: 'Event' object is not callable`` and whatever a
stop path does after it never runs (issue 9). Read from the source, so every thread class is
checked without starting it.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
THREAD_METHODS = {name for name in dir(threading.Thread) if callable(getattr(threading.Thread, name))}


def thread_classes() -> list[tuple[Path, ast.ClassDef]]:
    found = []
    for path in sorted([*REPO.glob("services/*/src/**/*.py"), *REPO.glob("operator/src/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(base) in ("Thread", "threading.Thread") for base in node.bases):
                found.append((path, node))
    return found


def test_the_live_path_is_one_of_the_thread_classes_checked():
    assert "LivePath" in {node.name for _, node in thread_classes()}


def test_no_thread_subclass_assigns_an_attribute_named_like_a_thread_method():
    shadowing = []
    for path, node in thread_classes():
        for target in (t for n in ast.walk(node) if isinstance(n, (ast.Assign, ast.AnnAssign)) for t in (n.targets if isinstance(n, ast.Assign) else [n.target])):
            if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self" and target.attr in THREAD_METHODS:
                shadowing.append(f"{path.relative_to(REPO)}:{target.lineno} {node.name}.{target.attr}")
    assert shadowing == [], "rename these attributes: they shadow threading.Thread methods"
