"""The command line and the producer configuration (no Kafka: --dry-run)."""

from __future__ import annotations

import orjson
import pytest
from simulator import cli
from simulator.kafka import producer_config


def test_dry_run_reports_counts_of_what_it_produced(capsys):
    assert cli.main(["--dry-run", "--rate", "0", "--count", "5000", "--meters", "200", "--malformed-fraction", "0.1",
                     "--faulty-fraction", "0.2", "--start", "2024-05-01T00:00:00Z"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    done = lines[-1]
    assert done["msg"] == "done"
    assert done["produced"] == 5000
    assert done["valid"] + done["malformed"] == 5000
    assert 300 <= done["malformed"] <= 700
    assert done["faulty"] > 0


def test_duration_bounds_a_paced_run(capsys):
    cli.main(["--dry-run", "--rate", "1000", "--duration", "500ms", "--meters", "50"])
    done = orjson.loads(capsys.readouterr().out.splitlines()[-1])
    assert 400 <= done["produced"] <= 600


def test_options_parse_durations_and_fractions():
    args = cli.build_parser().parse_args(["--silent-after", "2m", "--late-max", "30s", "--silent-fraction", "0.5"])
    assert args.silent_after == 120.0 and args.late_max == 30.0 and args.silent_fraction == 0.5
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--faulty-fraction", "1.5"])
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--start", "yesterday"])


def test_producer_is_configured_for_throughput_and_durability():
    config = producer_config("k1:9092,k2:9092")
    assert config["bootstrap.servers"] == "k1:9092,k2:9092"
    assert config["acks"] == "all" and config["compression.type"] == "lz4"
    assert config["linger.ms"] >= 10 and config["batch.size"] >= 1_000_000
    with pytest.raises(ValueError, match="KAFKA_BROKERS is empty"):
        producer_config(" ")
