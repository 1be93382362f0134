"""Command line: parse options, then run the generator into Kafka (or nowhere, with --dry-run)."""

from __future__ import annotations

import argparse
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from smartgrid_common.logs import setup_logging
from smartgrid_common.settings import load_settings, parse_duration

from simulator import pacing, timefmt
from simulator.generator import Batch, ReadingGenerator, SimulationConfig
from simulator.kafka import KafkaSink
from simulator.settings import SimulatorSettings

log = logging.getLogger("simulator")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction: give a number between 0 and 1")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _start(text: str) -> int:
    try:
        return timefmt.parse_start(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """The simulator's options (KAFKA_BROKERS and KAFKA_TOPIC give the defaults of the first two)."""
    parser = argparse.ArgumentParser(
        prog="smartgrid-simulator",
        description="Produce realistic smart-meter readings (and chosen faults) to Kafka.",
    )
    target = parser.add_argument_group("where")
    target.add_argument("--brokers", help="Kafka bootstrap servers (default: $KAFKA_BROKERS or 127.0.0.1:9092)")
    target.add_argument("--topic", help="topic (default: $KAFKA_TOPIC or smart-grid-transactions)")
    target.add_argument("--dry-run", action="store_true", help="generate only, send nothing (measures the generator)")

    amount = parser.add_argument_group("how much, how fast")
    amount.add_argument("--meters", type=int, default=100_000, help="number of meters (default 100000)")
    amount.add_argument("--rate", type=float, default=1000.0, help="readings per second; 0 = flat out (default 1000)")
    amount.add_argument("--duration", type=_duration, help="stop after this long (30s, 5m, ...)")
    amount.add_argument("--count", type=int, help="stop after this many records")
    amount.add_argument("--batch-size", type=int, default=10_000, help="records built per batch (default 10000)")

    times = parser.add_argument_group("event time")
    times.add_argument("--start", type=_start, help="RFC 3339 event time of the first round: a deterministic backfill")
    times.add_argument("--step-ms", type=int, default=1000, help="event-time advance per round with --start (default 1000)")
    times.add_argument(
        "--timestamp-format", choices=timefmt.TIMESTAMP_FORMATS, default="rfc3339", help="default rfc3339"
    )
    times.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")

    faults = parser.add_argument_group("faults")
    faults.add_argument("--faulty-fraction", type=_fraction, default=0.0, help="meters reporting status fault")
    faults.add_argument("--silent-fraction", type=_fraction, default=0.0, help="meters that go quiet")
    faults.add_argument("--silent-after", type=_duration, default=300.0, help="event time before they do (default 5m)")
    faults.add_argument("--malformed-fraction", type=_fraction, default=0.0, help="records violating the contract")
    faults.add_argument("--late-fraction", type=_fraction, default=0.0, help="readings stamped in the past")
    faults.add_argument("--late-max", type=_duration, default=60.0, help="how far in the past at most (default 60s)")

    parser.add_argument("--report-every", type=_duration, default=5.0, help="progress log interval (default 5s)")
    return parser


@dataclass(slots=True)
class Totals:
    """What the run produced so far."""

    produced: int = 0
    valid: int = 0
    malformed: int = 0
    faulty: int = 0
    late: int = 0

    def add(self, batch: Batch) -> None:
        self.produced += len(batch.values)
        self.valid += batch.valid
        self.malformed += batch.malformed
        self.faulty += batch.faulty
        self.late += batch.late


def run(args: argparse.Namespace, settings: SimulatorSettings) -> dict[str, Any]:
    """Produce until --count or --duration (or a signal); returns the final figures."""
    config = SimulationConfig(
        meters=args.meters,
        seed=args.seed,
        start_ms=args.start,
        step_ms=args.step_ms,
        timestamp_format=args.timestamp_format,
        faulty_fraction=args.faulty_fraction,
        silent_fraction=args.silent_fraction,
        silent_after_s=args.silent_after,
        malformed_fraction=args.malformed_fraction,
        late_fraction=args.late_fraction,
        late_max_s=max(1.0, args.late_max),
    )
    brokers = args.brokers or settings.kafka_brokers
    topic = args.topic or settings.kafka_topic
    built = time.monotonic()
    generator = ReadingGenerator(config)
    log.info(
        "fleet ready",
        extra={
            "meters": config.meters,
            "faulty_meters": sum(generator.fleet.faulty),
            "silent_meters": generator.silent_meters,
            "seconds": round(time.monotonic() - built, 2),
            "brokers": None if args.dry_run else brokers,
            "topic": None if args.dry_run else topic,
        },
    )
    sink = None if args.dry_run else KafkaSink(brokers, topic)

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    totals = Totals()
    batch_size = pacing.batch_size(args.rate, args.batch_size)
    started = time.monotonic()
    last_report, last_produced = started, 0

    def figures(now: float, interval_rate: float | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "produced": totals.produced,
            "valid": totals.valid,
            "malformed": totals.malformed,
            "faulty": totals.faulty,
            "late": totals.late,
            "silent_meters": generator.silent_meters if generator.quiet else 0,
            "rate": round(pacing.achieved_rate(totals.produced, now - started)),
        }
        if interval_rate is not None:
            entry["interval_rate"] = round(interval_rate)
        if sink is not None:
            entry |= {"delivered": sink.delivered, "delivery_errors": sink.delivery_errors, "in_flight": sink.in_flight}
        return entry

    while not stopping:
        now = time.monotonic()
        if args.duration is not None and now - started >= args.duration:
            break
        wanted = batch_size
        if args.count is not None:
            wanted = min(wanted, args.count - totals.produced)
            if wanted <= 0:
                break
        batch = generator.next_batch(wanted)
        if sink is not None:
            sink.send(batch.keys, batch.values)
        totals.add(batch)

        now = time.monotonic()
        if now - last_report >= args.report_every:
            log.info("progress", extra=figures(now, (totals.produced - last_produced) / (now - last_report)))
            last_report, last_produced = now, totals.produced
        wait = pacing.delay(args.rate, totals.produced, now - started)
        if wait > 0:
            time.sleep(wait)

    sending_done = time.monotonic()
    final = figures(sending_done)
    if sink is not None:
        remaining = sink.flush(60.0)
        flushed = time.monotonic()
        final.pop("in_flight")
        final |= {
            "delivered": sink.delivered,
            "delivery_errors": sink.delivery_errors,
            "undelivered": remaining,
            "rate_including_flush": round(pacing.achieved_rate(totals.produced, flushed - started)),
            "flush_seconds": round(flushed - sending_done, 2),
        }
        if sink.last_error:
            final["last_error"] = sink.last_error
    final["seconds"] = round(sending_done - started, 2)
    log.info("done", extra=final)
    return final


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m simulator`` and ``smartgrid-simulator``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.meters < 1:
        parser.error("--meters must be at least 1")
    if args.rate < 0:
        parser.error("--rate cannot be negative (0 means flat out)")
    if args.count is not None and args.count < 0:
        parser.error("--count cannot be negative")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    settings = load_settings(SimulatorSettings)
    setup_logging("simulator", settings.log_level)
    final = run(args, settings)
    return 1 if final.get("delivery_errors") or final.get("undelivered") else 0
