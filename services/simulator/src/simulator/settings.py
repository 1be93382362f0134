"""Environment settings of the simulator (command-line options override them)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict
from smartgrid_common.contracts import DEFAULT_TOPIC
from smartgrid_common.settings import env


class SimulatorSettings(BaseSettings):
    """Where the simulated readings go."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    # Kafka bootstrap servers, host:port[,host:port].
    kafka_brokers: str = env("KAFKA_BROKERS", "127.0.0.1:9092", min_length=1)
    # Topic the readings are produced to.
    kafka_topic: str = env("KAFKA_TOPIC", DEFAULT_TOPIC, min_length=1)
    # Log level of the JSON logs (DEBUG, INFO, WARNING, ERROR).
    log_level: str = env("SMARTGRID_LOG_LEVEL", "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
