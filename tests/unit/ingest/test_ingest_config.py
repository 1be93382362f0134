"""Configuration: parsing, partition planning, and start-up errors that say what to set."""

from __future__ import annotations

import pytest
from ingest.assignment import format_ranges, parse_partition_list, partitions_per_replica, replica_range, split_among_workers
from ingest.settings import IngestSettings
from ingest.topics import plan_partitions
from smartgrid_common.settings import ConfigError, load_settings, parse_duration


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith(("KAFKA_", "INFLUXDB_", "PROCESSOR_", "SMARTGRID_")):
            monkeypatch.delenv(name)


def test_durations_accept_the_original_systems_forms():
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1s") == 1.0
    assert parse_duration("2m") == 120.0
    assert parse_duration("1.5") == 1.5
    with pytest.raises(ValueError, match="write it like 500ms"):
        parse_duration("fast")


def test_partition_lists_and_ranges():
    assert parse_partition_list("0-3, 7,9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_partition_list("") == []
    for bad in ("3-1", "a", "1-", "-2"):
        with pytest.raises(ValueError):
            parse_partition_list(bad)
    assert replica_range(1, 8, 32) == list(range(8, 16))
    assert replica_range(3, 10, 32) == [30, 31]
    assert replica_range(4, 8, 32) == []
    assert partitions_per_replica(3, 32) == 11
    assert partitions_per_replica(0, 32) == 32
    assert split_among_workers([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
    assert split_among_workers([5], 4) == [[5]]
    assert format_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


def test_replicas_with_static_ranges_cover_every_partition_exactly_once(monkeypatch):
    covered = []
    for replica in range(4):
        monkeypatch.setenv("SMARTGRID_REPLICA_INDEX", str(replica))
        monkeypatch.setenv("SMARTGRID_PARTITIONS_PER_REPLICA", "8")
        covered += plan_partitions(load_settings(IngestSettings), 32)
    assert sorted(covered) == list(range(32))


def test_replica_index_comes_from_the_statefulset_ordinal(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "smartgrid-ingest-3")
    settings = load_settings(IngestSettings, )
    assert settings.replica == 3
    monkeypatch.setenv("KAFKA_CONSUMER_COUNT", "4")
    assert plan_partitions(load_settings(IngestSettings), 32) == list(range(24, 32))


def test_explicit_partition_list_wins(monkeypatch):
    monkeypatch.setenv("SMARTGRID_PARTITIONS", "0-2,9")
    assert plan_partitions(load_settings(IngestSettings), None) == [0, 1, 2, 9]


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("KAFKA_BROKERS", "", "KAFKA_BROKERS is empty: set it to host:port[,host:port]"),
        ("KAFKA_BROKERS", "localhost", "is not host:port"),
        ("KAFKA_BATCH_TIMEOUT", "soon", "KAFKA_BATCH_TIMEOUT is invalid"),
        ("KAFKA_BATCH_SIZE", "0", "KAFKA_BATCH_SIZE is invalid"),
        ("SMARTGRID_KAFKA_FETCH_WAIT", "soon", "SMARTGRID_KAFKA_FETCH_WAIT is invalid"),
        ("SMARTGRID_KAFKA_FETCH_WAIT", "10m", "SMARTGRID_KAFKA_FETCH_WAIT is invalid"),
        ("PROCESSOR_WORKER_COUNT", "many", "PROCESSOR_WORKER_COUNT is invalid"),
        ("PROCESSOR_ENABLE_AGGREGATIONS", "maybe", "set it to true or false"),
        ("INFLUXDB_BATCH_SIZE", "-5", "INFLUXDB_BATCH_SIZE is invalid"),
        ("SMARTGRID_PARTITIONS", "7-3", "SMARTGRID_PARTITIONS is invalid"),
        ("SMARTGRID_ASSIGNMENT", "random", "SMARTGRID_ASSIGNMENT is invalid"),
        ("SMARTGRID_TIMESTAMP_UNIT", "minutes", "SMARTGRID_TIMESTAMP_UNIT is invalid"),
    ],
)
def test_bad_configuration_stops_start_up_naming_the_variable(monkeypatch, capsys, name, value, fragment):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError):
        load_settings(IngestSettings)
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize(("value", "wait_ms"), [(None, "200"), ("50ms", "50"), ("0", "0"), ("1s", "1000")])
def test_the_readers_fetch_wait_is_set_by_its_variable(monkeypatch, value, wait_ms):
    from ingest.records import FETCH_MIN_BYTES, reader_config

    if value is not None:
        monkeypatch.setenv("SMARTGRID_KAFKA_FETCH_WAIT", value)
    config = reader_config(load_settings(IngestSettings), "live")
    assert (config["fetch.wait.max.ms"], config["fetch.min.bytes"]) == (wait_ms, str(FETCH_MIN_BYTES))


def test_sasl_without_user_is_refused_and_password_never_shown(monkeypatch, capsys):
    monkeypatch.setenv("SMARTGRID_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SMARTGRID_KAFKA_SASL_PASSWORD", "hunter2")
    with pytest.raises(ConfigError):
        load_settings(IngestSettings)
    err = capsys.readouterr().err
    assert "SMARTGRID_KAFKA_SASL_USERNAME is empty" in err
    assert "hunter2" not in err
    monkeypatch.setenv("SMARTGRID_KAFKA_SASL_USERNAME", "ingest")
    settings = load_settings(IngestSettings)
    assert "hunter2" not in repr(settings)
    assert settings.kafka_security()["sasl.password"] == "hunter2"


def test_lower_priority_raises_only_the_given_threads_nice_value():
    import os
    import threading

    from ingest.priority import lower_priority

    started, done = threading.Barrier(3), threading.Event()
    ids: dict[str, int] = {}

    def park(name: str) -> None:
        ids[name] = threading.get_native_id()
        started.wait(10)
        done.wait(10)

    threads = [threading.Thread(target=park, args=(name,)) for name in ("influx", "live")]
    for thread in threads:
        thread.start()
    started.wait(10)
    try:
        base = os.getpriority(os.PRIO_PROCESS, ids["live"])
        lower_priority({ids["influx"]}, 5)
        assert os.getpriority(os.PRIO_PROCESS, ids["influx"]) == min(19, base + 5)
        assert os.getpriority(os.PRIO_PROCESS, ids["live"]) == base
        lower_priority({ids["live"]}, 0)  # 0: off
        assert os.getpriority(os.PRIO_PROCESS, ids["live"]) == base
        ended = threading.Thread(target=lambda: ids.setdefault("ended", threading.get_native_id()))
        ended.start()
        ended.join()
        lower_priority({ids["ended"]}, 5)  # a thread that ended meanwhile is skipped, not an error
    finally:
        done.set()
        for thread in threads:
            thread.join()


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_the_native_reader_takes_every_supported_security_setting(monkeypatch, protocol, mechanism):
    # librdkafka is compiled into the extension: without TLS or SCRAM support, creating the client
    # with these settings fails ("Unsupported value ..."). Creating it connects to nothing.
    from ingest._hotpath import Reader
    from ingest.records import reader_config

    monkeypatch.setenv("SMARTGRID_KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("SMARTGRID_KAFKA_SASL_MECHANISM", mechanism)
    monkeypatch.setenv("SMARTGRID_KAFKA_SASL_USERNAME", "ingest")
    monkeypatch.setenv("SMARTGRID_KAFKA_SASL_PASSWORD", "secret")
    settings = load_settings(IngestSettings)
    reader = Reader(reader_config(settings, "live") | {"bootstrap.servers": "127.0.0.1:1"}, settings.kafka_topic)
    reader.close()


def test_the_native_reader_refuses_an_unsupported_sasl_mechanism():
    from ingest._hotpath import Reader

    with pytest.raises(ValueError, match="Unsupported SASL mechanism: NOPE"):
        Reader({"bootstrap.servers": "127.0.0.1:1", "security.protocol": "sasl_ssl", "sasl.mechanism": "NOPE"}, "t")


def test_prctl_names_the_calling_thread_and_a_failed_call_raises_with_the_reason():
    """One prctl for the worker's thread names and its parent-death signal: a call the kernel
    refuses is an OSError with errno (the worker then watches its parent instead)."""
    import errno
    import threading

    from ingest.priority import PR_SET_PDEATHSIG, name_os_thread, prctl

    seen: dict[str, str] = {}

    def named() -> None:
        name_os_thread("a-name-longer-than-fifteen-bytes")
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as comm:
            seen["comm"] = comm.read().strip()

    thread = threading.Thread(target=named)
    thread.start()
    thread.join()
    assert seen["comm"] == "a-name-longer-t"  # cut to 15 bytes
    with pytest.raises(OSError) as refused:
        prctl(PR_SET_PDEATHSIG, 1000)  # no such signal
    assert refused.value.errno == errno.EINVAL
