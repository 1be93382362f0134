"""A worker's reading, before and after read-once, on the same records in one process.

Produces ``--records`` simulator readings into a fresh 32-partition topic (not timed), then reads
them all from the beginning, ``--repeat`` times each way, alternating:

* two reads (before): the InfluxDB path's confluent-kafka ``Consumer.consume()`` (one Python
  message object per record) and ``Processor.process`` building lines, plus the live path's
  native ``Reader.poll`` folding summaries: every record fetched and decoded twice;
* one read (now): one native ``Reader.poll`` that folds the summaries and builds the lines of
  every record it hands off.

Prints CPU per record of this process (librdkafka's fetch threads included) and records/s of wall
time, and checks that both ways build the same lines and the same summaries. The broker's side
(it serves every record once instead of twice) is measured end to end by ``make bench-capacity``.
Needs the local stack (`scripts/stack up`):

    scripts/uv run --no-sync python bench/bench_read_once.py [--records 300000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from ingest._hotpath import Processor, Reader
from ingest.records import reader_config
from ingest.settings import IngestSettings
from simulator import generate, produce

BROKERS = "127.0.0.1:9092"
PARTITIONS = 32
BATCH = 10_000
# the native readers as a worker configures them (fetch wait, minimum bytes, queue: as shipped)
NATIVE = reader_config(IngestSettings(kafka_brokers=BROKERS), "bench")
# the InfluxDB path's confluent-kafka consumer before read-once: the same client settings
CONFIG = {key: value for key, value in NATIVE.items() if not key.startswith("fetch.")}


def group() -> str:
    return f"bench-read-{uuid.uuid4().hex}"


def two_reads(topic: str, total: int) -> tuple[float, float, bytes, list]:
    consumer = Consumer({**CONFIG, "group.id": group()})
    lines = Processor(topic, "ms", False, 300_000, lines=True)
    reader = Reader({**NATIVE, "group.id": group()}, topic)
    live = Processor(topic, "ms", True, 300_000, lines=False)
    wall, cpu = time.perf_counter(), time.process_time()
    consumer.assign([TopicPartition(topic, p, -2) for p in range(PARTITIONS)])
    reader.assign([(p, -2) for p in range(PARTITIONS)])
    bodies, read, folded = [], 0, 0
    while read < total:
        messages = [m for m in consumer.consume(num_messages=BATCH, timeout=1.0) if m.error() is None]
        if messages:
            result = lines.process([m.value() for m in messages], [m.partition() for m in messages], [m.offset() for m in messages])
            bodies.append(result.body)
        read += len(messages)
    while folded < total:
        folded += reader.poll(live, BATCH, 1.0).records
    summaries = live.take_summaries()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    consumer.close()
    reader.close()
    return wall, cpu, b"".join(bodies), summaries


def one_read(topic: str, total: int) -> tuple[float, float, bytes, list]:
    reader = Reader({**NATIVE, "group.id": group()}, topic)
    live = Processor(topic, "ms", True, 300_000, lines=False)
    wall, cpu = time.perf_counter(), time.process_time()
    for p in range(PARTITIONS):
        reader.hand_off(p, -1)
    reader.assign([(p, -2) for p in range(PARTITIONS)])
    bodies, read = [], 0
    while read < total:
        polled = reader.poll(live, BATCH, 1.0)
        read += polled.records
        if polled.lines is not None:
            bodies.append(polled.lines.body)
    summaries = live.take_summaries()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    reader.close()
    return wall, cpu, b"".join(bodies), summaries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000, help="records to produce and read (default 300,000)")
    parser.add_argument("--meters", type=int, default=20_000, help="distinct meters (default 20,000)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each way (default 3)")
    args = parser.parse_args()

    topic = f"bench-read-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)])[topic].result(30)
    try:
        produce(generate(args.records, meters=args.meters, seed=5), BROKERS, topic)
        print(f"a worker's reading: {args.records:,} records, {args.meters:,} meters, {PARTITIONS} partitions, "
              f"best of {args.repeat} (alternating)")
        results: dict[str, list[tuple[float, float]]] = {"two": [], "one": []}
        reference = None
        for _ in range(args.repeat):
            for name, way in (("two", two_reads), ("one", one_read)):
                wall, cpu, body, summaries = way(topic, args.records)
                results[name].append((wall, cpu))
                outcome = (sorted(body.splitlines()), summaries)
                if reference is None:
                    reference = outcome
                elif outcome != reference:
                    print(f"  MISMATCH: the {name}-read way built other lines or summaries than the first run")
                    return 1
        best = {name: (min(w for w, _ in runs), min(c for _, c in runs)) for name, runs in results.items()}
        for name, label in (("two", "two reads: confluent-kafka + process, native fold"), ("one", "one read: Reader.poll, fold + lines")):
            wall, cpu = best[name]
            print(f"  {label:<52} {cpu / args.records * 1e6:6.2f} µs CPU/record  {args.records / wall:>11,.0f} records/s wall")
        print(f"  one / two: x{best['one'][1] / best['two'][1]:.2f} CPU, x{best['two'][0] / best['one'][0]:.2f} wall speed; "
              f"lines and summaries identical: True ({len(reference[0]):,} lines, {len(reference[1])} partitions)")
    finally:
        admin.delete_topics([topic])[topic].result(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
