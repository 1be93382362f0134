"""The live path's read-and-fold: the native consumer against confluent-kafka + the hot path.

Produces ``--records`` simulator readings into a fresh 32-partition topic (not timed), then reads
them all from the beginning, folding every record into summaries, two ways, alternating
``--repeat`` times in this process:

* baseline: what the live path did before, a confluent-kafka ``Consumer.consume()`` batch (one
  Python message object per record), then ``Processor.process`` (aggregations on, no lines);
* native: ``LiveConsumer.poll`` into the same kind of ``Processor`` (librdkafka and the fold in
  Rust, the GIL released throughout).

Prints records/s of wall time and of this process's CPU time (both include librdkafka's fetch
threads), and checks that both ways produce the same summaries. Needs the local stack
(`scripts/stack up`):

    uv run --no-sync python bench/bench_live_consumer.py [--records 500000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from ingest._hotpath import LiveConsumer, Processor
from ingest.records import readable
from simulator import generate, produce

BROKERS = "127.0.0.1:9092"
PARTITIONS = 32
BATCH = 10_000
CONFIG = {
    "bootstrap.servers": BROKERS,
    "enable.auto.commit": "false",
    "enable.auto.offset.store": "false",
    "enable.partition.eof": "false",
    "fetch.wait.max.ms": "50",
    "queued.max.messages.kbytes": "16384",
}


def baseline(topic: str, total: int) -> tuple[float, float, list]:
    consumer = Consumer({**CONFIG, "group.id": f"bench-live-{uuid.uuid4().hex}"})
    processor = Processor(topic, "ms", True, 300_000, lines=False)
    wall, cpu = time.perf_counter(), time.process_time()
    consumer.assign([TopicPartition(topic, p, -2) for p in range(PARTITIONS)])
    read = 0
    while read < total:
        messages = consumer.consume(num_messages=BATCH, timeout=1.0)
        good, values, partitions, offsets = readable(messages, "bench")
        if good:
            processor.process(values, partitions, offsets)
        read += len(messages)
    summaries = processor.take_summaries()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    consumer.close()
    return wall, cpu, summaries


def native(topic: str, total: int) -> tuple[float, float, list]:
    consumer = LiveConsumer({**CONFIG, "group.id": f"bench-live-{uuid.uuid4().hex}"}, topic)
    processor = Processor(topic, "ms", True, 300_000, lines=False)
    wall, cpu = time.perf_counter(), time.process_time()
    consumer.assign([(p, -2) for p in range(PARTITIONS)])
    read = 0
    while read < total:
        read += consumer.poll(processor, BATCH, 1.0).records
    summaries = processor.take_summaries()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    consumer.close()
    return wall, cpu, summaries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500_000, help="records to produce and read (default 500,000)")
    parser.add_argument("--meters", type=int, default=20_000, help="distinct meters (default 20,000)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each way (default 3)")
    args = parser.parse_args()

    topic = f"bench-live-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)])[topic].result(30)
    try:
        produce(generate(args.records, meters=args.meters, seed=5), BROKERS, topic)
        print(f"live read-and-fold: {args.records:,} records, {args.meters:,} meters, {PARTITIONS} partitions, "
              f"batches of {BATCH:,}, best of {args.repeat} (alternating)")
        results: dict[str, list[tuple[float, float]]] = {"baseline": [], "native": []}
        reference = None
        for _ in range(args.repeat):
            for name, way in (("baseline", baseline), ("native", native)):
                wall, cpu, summaries = way(topic, args.records)
                results[name].append((wall, cpu))
                if reference is None:
                    reference = summaries
                elif summaries != reference:
                    print(f"  MISMATCH: {name} summaries differ from the first run's")
                    return 1
        best = {name: (min(w for w, _ in runs), min(c for _, c in runs)) for name, runs in results.items()}
        for name, label in (("baseline", "confluent-kafka consume() + Processor.process"),
                            ("native", "LiveConsumer.poll (native)")):
            wall, cpu = best[name]
            print(f"  {label:<48} {args.records / wall:>11,.0f} records/s wall, "
                  f"{args.records / cpu:>11,.0f} records/s per CPU-second")
        print(f"  native / baseline: x{best['baseline'][0] / best['native'][0]:.2f} wall, "
              f"x{best['baseline'][1] / best['native'][1]:.2f} CPU; summaries identical: True "
              f"({len(reference or [])} partitions)")
    finally:
        admin.delete_topics([topic])[topic].result(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
