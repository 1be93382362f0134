"""The log oracle of the integration tests (``service_logs``) finds what it must and only that.

It needs no server; it sits with the integration tests because it is their fixture.
"""

from __future__ import annotations

import json

import pytest

from service_logs import ServiceLogs, log_problems

pytestmark = pytest.mark.integration


def line(level: str, msg: str, **extra) -> str:
    return json.dumps({"ts": "2026-01-01T00:00:00.000Z", "level": level, "service": "ingest", "logger": "x", "msg": msg, **extra})


WORKER_TRACEBACK = """Process ingest-worker-1:
Traceback (most recent call last):
  File "/x/supervisor.py", line 111, in worker_main
    Worker(settings).run()
TypeError: 'Event' object is not callable"""


@pytest.fixture
def elsewhere(tmp_path_factory):
    """A directory outside the test's own tmp_path, which the fixture under test scans itself."""
    return tmp_path_factory.mktemp("synthetic-logs")


def test_error_lines_exceptions_tracebacks_panics_and_librdkafka_errors_are_problems(elsewhere):
    log = elsewhere / "ingest-0.log"
    log.write_text("\n".join([
        line("info", "worker started"),
        line("warning", "record dead-lettered"),
        line("error", "dead-letter topic not ready"),
        line("warning", "retrying", exc="Traceback (most recent call last):\n  ...\nOSError: boom"),
        WORKER_TRACEBACK,
        line("info", "ingest stopped"),
        "thread '<unnamed>' panicked at src/live.rs:10:5:",
        "%3|1700000000.000|FAIL|rdkafka#consumer-1| [thrd:127.0.0.1:9092/1]: Connect failed",
        "%5|1700000000.000|PARTCNT|rdkafka#consumer-1| notice, not an error",
    ]) + "\n")
    problems = log_problems(log)
    assert [problem.line for problem in problems] == [3, 4, 5, 11, 12]
    assert problems[2].text == WORKER_TRACEBACK  # the header, its frames and the exception: one problem


def test_chained_tracebacks_are_one_problem_and_a_panic_after_them_is_another(elsewhere):
    log = elsewhere / "worker.log"
    chained = WORKER_TRACEBACK + "\n\nDuring handling of the above exception, another exception occurred:\n\n" + WORKER_TRACEBACK.split("\n", 1)[1]
    log.write_text(chained + "\nthread 'live' panicked at src/live.rs:1:1:\nnote: run with RUST_BACKTRACE=1\n")
    assert [problem.text for problem in log_problems(log)] == [chained, "thread 'live' panicked at src/live.rs:1:1:\nnote: run with RUST_BACKTRACE=1"]


def test_only_undeclared_problems_fail_and_a_watched_log_is_read_from_where_it_was(elsewhere, tmp_path_factory):
    (elsewhere / "services").mkdir()
    (elsewhere / "services" / "writer.log").write_text(line("error", "influxdb unavailable") + "\n")
    shared = tmp_path_factory.mktemp("state") / "ingest.log"
    shared.write_text(line("error", "from an earlier run") + "\n")
    logs = ServiceLogs(elsewhere)
    logs.watch(shared)
    with shared.open("a") as handle:
        handle.write(line("error", "during this test") + "\n")
    assert sorted(p.text.split('"msg": ')[1] for p in logs.unexpected()) == ['"during this test"}', '"influxdb unavailable"}']
    logs.expect("influxdb unavailable", "during this")
    assert logs.unexpected() == []
