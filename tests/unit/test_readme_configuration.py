"""The README's configuration tables stay true: every variable a service reads is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from aggregator.settings import AggregatorSettings
from ingest.settings import IngestSettings
from writer.settings import WriterSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("settings", [IngestSettings, AggregatorSettings, WriterSettings])
def test_every_environment_variable_is_in_the_readme(settings):
    names = [field.validation_alias for field in settings.model_fields.values()]
    assert all(isinstance(name, str) for name in names)
    missing = [name for name in names if f"`{name}`" not in README]
    assert not missing, f"document these in README.md's configuration tables: {missing}"


def test_the_original_variables_keep_their_names():
    original = {
        "KAFKA_BROKERS", "KAFKA_TOPIC", "KAFKA_GROUP_ID", "KAFKA_CONSUMER_COUNT", "KAFKA_BATCH_SIZE",
        "KAFKA_BATCH_TIMEOUT", "INFLUXDB_URL", "INFLUXDB_DATABASE", "INFLUXDB_RETENTION_POLICY",
        "INFLUXDB_BATCH_SIZE", "INFLUXDB_BATCH_TIMEOUT", "INFLUXDB_MAX_RETRIES", "INFLUXDB_RETRY_INTERVAL",
        "PROCESSOR_WORKER_COUNT", "PROCESSOR_QUEUE_SIZE", "PROCESSOR_ENABLE_AGGREGATIONS",
    }
    read = {field.validation_alias for field in IngestSettings.model_fields.values()}
    assert original <= read
    new = read - original
    assert all(name.startswith("SMARTGRID_") for name in new), sorted(n for n in new if not n.startswith("SMARTGRID_"))
