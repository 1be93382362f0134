"""Ingest configuration: the original system's variables plus ``SMARTGRID_*`` additions."""

from __future__ import annotations

import socket

from pydantic import SecretStr, field_validator, model_validator
from smartgrid_common.contracts import DEFAULT_TOPIC, DLQ_SUFFIX
from smartgrid_common.logs import KAFKA_CLIENT_LOG
from smartgrid_common.settings import Duration, EventTimeSettings, InfluxSettings, RedisSettings, ServiceSettings, env

from .assignment import parse_partition_list


class IngestSettings(ServiceSettings, InfluxSettings, RedisSettings, EventTimeSettings):
    """Everything the ingest service reads from its environment."""

    # Kafka bootstrap servers, host:port[,host:port].
    kafka_brokers: str = env("KAFKA_BROKERS", "127.0.0.1:9092")
    # Topic of the meter readings.
    kafka_topic: str = env("KAFKA_TOPIC", DEFAULT_TOPIC, min_length=1)
    # Consumer group id; offsets are committed under it in every assignment mode.
    kafka_group_id: str = env("KAFKA_GROUP_ID", "smartgrid-ingest", min_length=1)
    # Ingest replicas sharing the topic; the static range size derives from it when
    # SMARTGRID_PARTITIONS_PER_REPLICA is not set (0: one replica takes every partition).
    kafka_consumer_count: int = env("KAFKA_CONSUMER_COUNT", 0, ge=0)
    # Most messages taken from Kafka in one consume call (one hot-path batch).
    kafka_batch_size: int = env("KAFKA_BATCH_SIZE", 10000, gt=0, le=1_000_000)
    # Longest a consume call waits to fill a batch.
    kafka_batch_timeout: Duration = env("KAFKA_BATCH_TIMEOUT", 0.5)
    # Longest the broker holds a fetch to fill it (librdkafka's fetch.wait.max.ms; the fetch also
    # returns once it holds FETCH_MIN_BYTES): the delay added to the live view at low rates, and
    # fewer, fuller fetches for the reader and the broker (see records.py).
    kafka_fetch_wait: Duration = env("SMARTGRID_KAFKA_FETCH_WAIT", 0.2, ge=0, le=300)
    # Worker processes per pod; each owns a share of the pod's partitions.
    processor_worker_count: int = env("PROCESSOR_WORKER_COUNT", 1, ge=1, le=64)
    # Most messages a worker holds between consume and commit; above it, fetching pauses.
    processor_queue_size: int = env("PROCESSOR_QUEUE_SIZE", 100_000, gt=0)
    # Publish per-batch summaries for the live aggregations.
    processor_enable_aggregations: bool = env("PROCESSOR_ENABLE_AGGREGATIONS", True)

    # `static` (a fixed partition range per replica) or `group` (Kafka group subscription).
    assignment: str = env("SMARTGRID_ASSIGNMENT", "static", pattern=r"^(static|group)$")
    # Explicit partitions of this replica, e.g. `0-7,12`; overrides the computed range.
    partitions: str = env("SMARTGRID_PARTITIONS", "")
    # Partitions per replica; replica i takes [i*k, (i+1)*k).
    partitions_per_replica: int = env("SMARTGRID_PARTITIONS_PER_REPLICA", 0, ge=0)
    # This replica's index; default: the ordinal at the end of the host name (StatefulSet pod).
    replica_index: int | None = env("SMARTGRID_REPLICA_INDEX", None, ge=0)
    # Dead-letter topic for invalid records (default `<KAFKA_TOPIC>.dlq`).
    dlq_topic: str = env("SMARTGRID_DLQ_TOPIC", "")
    # Unit of epoch-number timestamps: s, ms, us or ns.
    timestamp_unit: str = env("SMARTGRID_TIMESTAMP_UNIT", "ms", pattern=r"^(s|ms|us|ns)$")
    # Event-time silence after which a meter counts as offline.
    offline_after: Duration = env("SMARTGRID_OFFLINE_AFTER", 300.0)
    # How often the live path publishes summaries (the dashboard's freshness, and Redis load).
    summary_interval: Duration = env("SMARTGRID_SUMMARY_INTERVAL", 0.25)
    # After event time enters a new second, how long the live path waits for that second's last
    # readings from its other partitions before publishing it early (0: on the interval only).
    second_close_grace: Duration = env("SMARTGRID_SECOND_CLOSE_GRACE", 0.08)
    # How often a worker checkpoints meter state to Redis (with a summary).
    checkpoint_interval: Duration = env("SMARTGRID_CHECKPOINT_INTERVAL", 10.0)
    # On SIGTERM, how long workers may take to write and commit what is in flight.
    shutdown_timeout: Duration = env("SMARTGRID_SHUTDOWN_TIMEOUT", 25.0)
    # InfluxDB writes in flight per worker (overlap network with decoding).
    influxdb_concurrency: int = env("SMARTGRID_INFLUXDB_CONCURRENCY", 2, ge=1, le=16)
    # Nice increment of the InfluxDB path's threads: when CPU is short, the live path runs first.
    influxdb_path_nice: int = env("SMARTGRID_INFLUXDB_PATH_NICE", 19, ge=0, le=19)
    # Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    kafka_security_protocol: str = env(
        "SMARTGRID_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$"
    )
    # SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) when SASL is used.
    kafka_sasl_mechanism: str = env("SMARTGRID_KAFKA_SASL_MECHANISM", "PLAIN")
    # SASL user name.
    kafka_sasl_username: str = env("SMARTGRID_KAFKA_SASL_USERNAME", "")
    # SASL password (from a Secret; never logged).
    kafka_sasl_password: SecretStr = env("SMARTGRID_KAFKA_SASL_PASSWORD", SecretStr(""))

    @field_validator("kafka_brokers")
    @classmethod
    def _brokers(cls, value: str) -> str:
        brokers = [part.strip() for part in value.split(",") if part.strip()]
        if not brokers:
            raise ValueError("KAFKA_BROKERS is empty: set it to host:port[,host:port]")
        for broker in brokers:
            host, _, port = broker.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{broker!r} is not host:port: set KAFKA_BROKERS to host:port[,host:port]")
        return ",".join(brokers)

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, value: str) -> str:
        parse_partition_list(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _consistent(self) -> IngestSettings:
        if self.kafka_sasl_mechanism and self.kafka_security_protocol.startswith("SASL"):
            if not self.kafka_sasl_username:
                raise ValueError(
                    "SMARTGRID_KAFKA_SASL_USERNAME is empty but SMARTGRID_KAFKA_SECURITY_PROTOCOL "
                    f"is {self.kafka_security_protocol}: set the user name (and the password)"
                )
        return self

    @property
    def dead_letter_topic(self) -> str:
        """Where invalid records go."""
        return self.dlq_topic or f"{self.kafka_topic}{DLQ_SUFFIX}"

    @property
    def replica(self) -> int:
        """This replica's index: SMARTGRID_REPLICA_INDEX, else the host name's ordinal, else 0."""
        if self.replica_index is not None:
            return self.replica_index
        name = socket.gethostname()
        suffix = name.rsplit("-", 1)[-1]
        return int(suffix) if "-" in name and suffix.isdigit() else 0

    def kafka_client(self) -> dict:
        """The settings every confluent-kafka client of ingest starts from: the brokers, security,
        and librdkafka's lines through the service's logging (the client must be polled)."""
        return {"bootstrap.servers": self.kafka_brokers, "logger": KAFKA_CLIENT_LOG, **self.kafka_security()}

    def kafka_security(self) -> dict[str, str]:
        """librdkafka security settings (the password is read here only)."""
        config = {"security.protocol": self.kafka_security_protocol.lower()}
        if self.kafka_security_protocol.startswith("SASL"):
            config |= {
                "sasl.mechanism": self.kafka_sasl_mechanism,
                "sasl.username": self.kafka_sasl_username,
                "sasl.password": self.kafka_sasl_password.get_secret_value(),
            }
        return config
