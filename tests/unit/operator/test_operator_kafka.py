"""Lag arithmetic, the AdminClient settings and the SASL credentials from the consumer's Secret.

Reading the Secret from the API server and the Kafka calls are tested in tests/k8s/.
"""

from __future__ import annotations

import pytest

from smartgrid_operator.kafka import (
    CredentialsMissing,
    SaslCredentials,
    admin_config,
    consumer_lag,
    sasl_credentials,
    sasl_secret_ref,
)


def test_lag_is_high_watermark_minus_committed_summed_over_partitions():
    assert consumer_lag({0: 100, 1: 50}, {0: 0, 1: 0}, {0: 90, 1: 50}) == 10


def test_a_partition_without_a_commit_counts_from_its_earliest_retained_record():
    assert consumer_lag({0: 100, 1: 80}, {0: 0, 1: 30}, {0: 100, 1: -1001}) == 50


def test_lag_is_never_negative():
    assert consumer_lag({0: 10}, {0: 0}, {0: 12}) == 0


SASL = {"protocol": "SASL_SSL", "saslMechanism": "SCRAM-SHA-512", "credentialsSecret": {"name": "kafka-user"}}
OPERATOR_ENV = {
    "SMARTGRID_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "SMARTGRID_KAFKA_SASL_MECHANISM": "PLAIN",
    "SMARTGRID_KAFKA_SASL_USERNAME": "operator-env-user",
    "SMARTGRID_KAFKA_SASL_PASSWORD": "operator-env-password",
}


def test_admin_config_takes_protocol_mechanism_and_credentials_from_the_consumer_not_the_operators_env(monkeypatch):
    for variable, value in OPERATOR_ENV.items():
        monkeypatch.setenv(variable, value)
    config = admin_config("k:9092", 2.0, SASL, SaslCredentials("grid-user", "grid-password"))
    assert config["bootstrap.servers"] == "k:9092"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("grid-user", "grid-password")
    assert not set(OPERATOR_ENV.values()) & {str(v) for v in config.values()}


def test_a_plaintext_consumer_gets_no_sasl_settings_even_when_the_operator_has_some_in_its_env(monkeypatch):
    for variable, value in OPERATOR_ENV.items():
        monkeypatch.setenv(variable, value)
    config = admin_config("k:9092", 2.0, {"protocol": "PLAINTEXT"})
    assert config["security.protocol"] == "PLAINTEXT"
    assert not any(key.startswith("sasl.") for key in config)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_only_a_sasl_protocol_needs_the_secret(protocol):
    assert sasl_secret_ref({"protocol": protocol, "credentialsSecret": {"name": "unused"}}) is None
    assert sasl_secret_ref(SASL) == {"name": "kafka-user"}


def test_a_sasl_protocol_without_a_credentials_secret_says_to_name_one():
    with pytest.raises(CredentialsMissing, match="spec.kafka.security.credentialsSecret is not set"):
        sasl_secret_ref({"protocol": "SASL_PLAINTEXT", "saslMechanism": "PLAIN"})


def test_credentials_are_read_with_the_keys_the_reference_names():
    ref = {"name": "kafka-user", "usernameKey": "user", "passwordKey": "pass"}
    credentials = sasl_credentials("grid", ref, {"user": b"grid-user", "pass": b"s3cret", "username": b"other"})
    assert credentials == SaslCredentials("grid-user", "s3cret")


def test_default_keys_are_username_and_password():
    credentials = sasl_credentials("grid", {"name": "kafka-user"}, {"username": b"u", "password": b"p"})
    assert credentials == SaslCredentials("u", "p")


def test_a_missing_secret_says_which_secret_to_create_with_which_keys():
    ref = {"name": "kafka-user", "usernameKey": "user", "passwordKey": "pass"}
    with pytest.raises(CredentialsMissing) as error:
        sasl_credentials("grid", ref, None)
    message = str(error.value)
    assert "Secret grid/kafka-user" in message and "not found" in message
    assert "kubectl -n grid create secret generic kafka-user --from-literal=user=USER --from-literal=pass=PASSWORD" in (
        message
    )


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"username": b"u"}, "password"),
        ({"username": b"", "password": b"p"}, "username"),
        ({}, "username and password"),
    ],
)
def test_a_missing_or_empty_key_is_named(data, named):
    with pytest.raises(CredentialsMissing, match=f"has no \\(or an empty\\) {named}:"):
        sasl_credentials("grid", {"name": "kafka-user"}, data)


def test_credentials_that_are_not_utf8_are_reported_not_mangled():
    with pytest.raises(CredentialsMissing, match="UTF-8"):
        sasl_credentials("grid", {"name": "kafka-user"}, {"username": b"u", "password": b"\xff\xfe"})


def test_the_password_never_shows_in_a_repr():
    assert "s3cret" not in repr(SaslCredentials("grid-user", "s3cret"))
