"""Lag arithmetic and the AdminClient settings (the network part is tested in tests/k8s/)."""

from __future__ import annotations

from smartgrid_operator.kafka import admin_config, consumer_lag


def test_lag_is_high_watermark_minus_committed_summed_over_partitions():
    assert consumer_lag({0: 100, 1: 50}, {0: 0, 1: 0}, {0: 90, 1: 50}) == 10


def test_a_partition_without_a_commit_counts_from_its_earliest_retained_record():
    assert consumer_lag({0: 100, 1: 80}, {0: 0, 1: 30}, {0: 100, 1: -1001}) == 50


def test_lag_is_never_negative():
    assert consumer_lag({0: 10}, {0: 0}, {0: 12}) == 0


def test_admin_uses_the_operators_own_credentials_from_its_environment(monkeypatch):
    monkeypatch.setenv("SMARTGRID_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SMARTGRID_KAFKA_SASL_USERNAME", "operator")
    config = admin_config("k:9092", 2.0)
    assert config["bootstrap.servers"] == "k:9092"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.username"] == "operator"
    assert "sasl.password" not in config
