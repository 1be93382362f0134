"""The Quix Streams peer of bench_peers.py: Kafka topic -> InfluxDB 1.x with its InfluxDB1Sink.

Runs in its own virtual environment (``quixstreams[influxdb1]``, made by bench_peers.py under
~/.cache/smartgrid/peers), not the project's: it imports nothing from this repository. Written the
way its documentation shows, with the settings a user would choose for these readings: the
readings' fields and tags, ints as floats (the product writes every number as a float), 10k points
per request, and a function for the time (naming the field instead makes the client parse every
point with dateutil). Stops on SIGTERM (its own handler).

    python peer_quixstreams.py BROKERS TOPIC GROUP INFLUX_HOST INFLUX_PORT DATABASE
"""

import sys
from datetime import datetime

from quixstreams import Application
from quixstreams.sinks.community.influxdb1 import InfluxDB1Sink

FIELDS = ["consumption_kwh", "latitude", "longitude", "peak_load"]
TAGS = ["meter_id", "region", "status", "building_type"]


def event_ms(reading: dict) -> int:
    """The reading's RFC 3339 timestamp in epoch milliseconds."""
    return int(datetime.fromisoformat(reading["timestamp"]).timestamp() * 1000)


def main() -> None:
    brokers, topic_name, group, host, port, database = sys.argv[1:7]
    app = Application(broker_address=brokers, consumer_group=group, auto_offset_reset="earliest",
                      loglevel="WARNING")
    sink = InfluxDB1Sink(host=host, port=int(port), database=database, measurement="energy_consumption",
                         fields_keys=FIELDS, tags_keys=TAGS, time_setter=event_ms, time_precision="ms",
                         allow_missing_fields=True, convert_ints_to_floats=True, batch_size=10_000)
    app.dataframe(app.topic(topic_name, value_deserializer="json")).sink(sink)
    app.run()


if __name__ == "__main__":
    main()
