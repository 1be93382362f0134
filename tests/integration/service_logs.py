"""Service logs as a test oracle: a service that logs an ERROR or a traceback fails the test.

Services log JSON lines (``smartgrid_common.logs``); what escapes the logging (an uncaught
exception in a worker process or a thread, a Rust panic, librdkafka's own error lines) arrives as
plain text on the same stream, because worker processes and threads inherit stdout and stderr.
:func:`log_problems` finds both kinds; the ``service_logs`` fixture (``conftest.py``) runs it over
every service log a test produced and fails the test on any problem it did not declare with
``@pytest.mark.expected_log_errors(<regex>, ...)`` or ``service_logs.expect(<regex>)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson

# Plain-text lines that are (or start) a problem. A traceback's header ("Process ...:",
# "Exception in thread ...") and chained tracebacks join the traceback they belong to; every
# other match is a problem of its own.
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\)|^Exception in thread |^Process .*:$")
_OTHER_PROBLEMS = re.compile(
    r"panicked at"  # Rust
    r"|^Fatal Python error"
    r"|^%[0-3]\|"  # librdkafka's own log lines at levels emerg..err
)
_ERROR_LEVELS = {"error", "critical", "fatal"}


@dataclass
class Problem:
    """One ERROR line or traceback in a log: where it is and its text."""

    path: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line}: {self.text[:1500]}"


def log_problems(path: Path, start: int = 0) -> list[Problem]:
    """ERROR (or worse) JSON lines, JSON lines carrying an exception, and plain-text tracebacks,
    panics and librdkafka errors in ``path`` from byte ``start`` on."""
    with path.open("rb") as handle:
        handle.seek(start)
        lines = handle.read().decode(errors="replace").splitlines()
    problems: list[Problem] = []
    current: Problem | None = None  # the plain-text problem that following lines belong to
    in_traceback = False
    for number, line in enumerate(lines, 1):
        entry = _json(line)
        if entry is not None:
            current = None
            if str(entry.get("level", "")).lower() in _ERROR_LEVELS or "exc" in entry:
                problems.append(Problem(path, number, line))
        elif _TRACEBACK.search(line) and current is not None and in_traceback:
            current.text += "\n" + line
        elif _TRACEBACK.search(line) or _OTHER_PROBLEMS.search(line):
            current, in_traceback = Problem(path, number, line), bool(_TRACEBACK.search(line))
            problems.append(current)
        elif current is not None:
            # A traceback's frames and exception line (and the "During handling..." between
            # chained ones): a plain-text problem runs on to the next JSON line or problem.
            current.text += "\n" + line
    return problems


def _json(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


@dataclass
class ServiceLogs:
    """The logs of the services one test started, and the problems it expects in them."""

    directory: Path
    expected: list[re.Pattern] = field(default_factory=list)
    watched: dict[Path, int] = field(default_factory=dict)

    def expect(self, *patterns: str) -> None:
        """Declare ERROR lines or tracebacks this test provokes (regular expressions, searched)."""
        self.expected += [re.compile(pattern) for pattern in patterns]

    def watch(self, path: Path) -> None:
        """Scan ``path`` too, from its current end (a log outside the test's directory that
        other runs append to, like ``.state/logs/`` of ``scripts/run-local``)."""
        self.watched[path] = path.stat().st_size if path.exists() else 0

    def unexpected(self) -> list[Problem]:
        """Problems in every ``*.log`` under the test's directory and in the watched logs that no
        expected pattern matches."""
        logs = {path: 0 for path in sorted(self.directory.rglob("*.log"))} | self.watched
        problems = [problem for path, start in logs.items() if path.exists() for problem in log_problems(path, start)]
        return [problem for problem in problems if not any(pattern.search(problem.text) for pattern in self.expected)]
