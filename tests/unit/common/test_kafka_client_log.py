"""librdkafka's own lines reach the services' logging, not stderr as plain text.

Real confluent-kafka clients against a port where nothing listens (127.0.0.1:1): librdkafka
logs its refused connections, which must come back through the ``librdkafka`` logger as warnings
(it retries them), served by the poll each client gets before it is closed.
"""

from __future__ import annotations

import logging
import re

import pytest
from ingest.settings import IngestSettings
from ingest.topics import topic_partition_count
from smartgrid_common.logs import KAFKA_CLIENT_LOG

from smartgrid_operator.kafka import KafkaUnavailable, read_topic

UNREACHABLE = "127.0.0.1:1"
RAW_LINE = re.compile(r"^%\d\|", re.MULTILINE)  # librdkafka's own format: %<level>|<time>|<facility>|...


@pytest.mark.parametrize(
    ("rdkafka", "python"),
    [(logging.CRITICAL, logging.WARNING), (logging.ERROR, logging.WARNING), (logging.WARNING, logging.WARNING),
     (logging.INFO, logging.INFO), (logging.DEBUG, logging.DEBUG)],
)
def test_librdkafka_s_errors_are_warnings_its_notices_info(caplog, rdkafka, python):
    caplog.set_level(logging.DEBUG, logger="librdkafka")
    KAFKA_CLIENT_LOG.log(rdkafka, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connect failed")
    [record] = caplog.records
    assert (record.name, record.levelno, record.getMessage()) == ("librdkafka", python, "FAIL [rdkafka#consumer-1] Connect failed")


def _refused(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "librdkafka" and "Connect to" in r.getMessage()]


def test_ingest_s_start_up_client_logs_through_the_service(caplog, capfd, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="librdkafka")
    monkeypatch.setenv("KAFKA_BROKERS", UNREACHABLE)
    settings = IngestSettings()
    assert topic_partition_count(settings, timeout=1.0) is None
    refused = _refused(caplog)
    assert refused and all(r.levelno == logging.WARNING for r in refused)
    assert not RAW_LINE.search(capfd.readouterr().err)


def test_the_operator_s_admin_client_logs_through_the_operator(caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="librdkafka")
    with pytest.raises(KafkaUnavailable):
        read_topic({"bootstrap.servers": UNREACHABLE}, "readings", "group", timeout_s=1.0)
    assert _refused(caplog)
    assert not RAW_LINE.search(capfd.readouterr().err)
