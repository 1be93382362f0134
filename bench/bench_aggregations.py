"""Aggregations benchmark, in one run: fold rate, ingest cost of aggregations, freshness at a fixed load.

Prints the three figures the aggregations issue asks for, each with its target and a verdict:

1. the aggregator's fold rate (summaries/s and readings represented/s) through the real Lua fold in
   Redis, as bench_aggregator.py measures it; the headline is the service's fold group
   (SMARTGRID_AGGREGATOR_FOLD_GROUP, 20). Target: at least the freshness load in readings/s (the
   issue gives no figure for it; an aggregator slower than the load could not keep the view fresh);
2. Kafka -> InfluxDB through ``python -m ingest`` with aggregations off and on, on the same records
   (bench_ingest.py's end-to-end part, without its hot-path and capacity sections), ``--pairs``
   times alternating (default 3). Target: the cost of aggregations, from the median of each mode,
   is at most 15 % of the "off" throughput;
3. freshness, produce -> visible in ``/api/live``, at a fixed load (default 50,000 readings/s for
   40 s, 15 s warm-up, 20,000 meters), as bench_freshness.py measures it. Target: p99 per event
   second at most 1 s, every second complete, and the load actually achieved (>= 95 % of it).

Needs the local stack (``scripts/stack up``); endpoints come from KAFKA_BROKERS, INFLUXDB_URL and
SMARTGRID_REDIS_URL as in the other scripts. Writes bench/results/aggregations-<timestamp>.json
and removes the topics, databases, consumer groups and Redis keys it created. About 3 to 6
minutes on the 2-CPU dev machine with the defaults. Run on purpose:

    uv run --no-sync python bench/bench_aggregations.py [--records 300000] [--rate 50000] [--seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_aggregator  # noqa: E402
import bench_freshness  # noqa: E402
import bench_ingest  # noqa: E402

RESULTS = bench_ingest.RESULTS
FOLD_GROUP = 20  # SMARTGRID_AGGREGATOR_FOLD_GROUP's default
COST_TARGET = 15.0  # percent
FRESHNESS_P99_TARGET_MS = 1000.0
LOAD_SHARE = 0.95  # the freshness load counts as achieved at >= 95 % of --rate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fold = parser.add_argument_group("1. aggregator fold rate (bench_aggregator.py)")
    fold.add_argument("--fold-meters", type=int, default=2000, help="meters in the folded readings (default 2,000)")
    fold.add_argument("--fold-seconds", type=int, default=30, help="seconds of readings folded (default 30)")
    fold.add_argument("--fold-partitions", type=int, default=8, help="partitions the summaries are chained over (default 8)")
    fold.add_argument("--fold-batch", type=int, default=1000, help="readings per summary (default 1,000)")
    fold.add_argument("--fold-group", type=int, default=FOLD_GROUP,
                      help=f"summaries per EVALSHA for the headline figure (default {FOLD_GROUP}, the service's)")
    fold.add_argument("--fold-target", type=float, default=None,
                      help="readings represented/s the fold must reach (default: the freshness --rate)")
    ingest = parser.add_argument_group("2. ingest throughput, aggregations off vs on (bench_ingest.py, end to end)")
    ingest.add_argument("--records", type=int, default=300_000,
                        help="records produced, then ingested once per run (default 300,000)")
    ingest.add_argument("--pairs", type=int, default=3,
                        help="runs per mode, alternating off/on; the cost compares the medians (default 3)")
    ingest.add_argument("--ingest-meters", type=int, default=100_000, help="distinct meters in those records (default 100,000)")
    ingest.add_argument("--workers", type=int, default=1, help="PROCESSOR_WORKER_COUNT (default 1)")
    ingest.add_argument("--batch-size", type=int, default=10_000, help="INFLUXDB_BATCH_SIZE (default 10,000)")
    ingest.add_argument("--concurrency", type=int, default=2, help="InfluxDB writes in flight (default 2)")
    fresh = parser.add_argument_group("3. freshness at a fixed load (bench_freshness.py)")
    fresh.add_argument("--rate", type=int, default=50_000, help="readings/s produced (default 50,000)")
    fresh.add_argument("--seconds", type=float, default=40.0, help="how long to produce (default 40)")
    fresh.add_argument("--warmup", type=float, default=15.0, help="first seconds left out of the figures (default 15)")
    fresh.add_argument("--meters", type=int, default=20_000, help="distinct meters (default 20,000)")
    fresh.add_argument("--batch", type=int, default=2_500, help="readings per producer call (default 2,500)")
    fresh.add_argument("--poll", type=float, default=0.1, help="API poll interval in s (default 0.1)")
    fresh.add_argument("--drain", type=float, default=90.0,
                       help="how long to wait for the backlog after producing, s (default 90; bench_freshness: 240)")
    fresh.add_argument("--no-writer", action="store_true", help="do not run the writer")
    parser.add_argument("--skip", action="append", default=[], choices=["fold", "ingest", "freshness"],
                        help="leave a part out (repeatable)")
    return parser


def fold_part(args) -> dict:
    groups = tuple(sorted(set(bench_aggregator.GROUPS) | {args.fold_group}))
    redis_url = os.environ.get("SMARTGRID_REDIS_URL", "redis://127.0.0.1:6379/0")
    result = asyncio.run(bench_aggregator.measure(args.fold_meters, args.fold_seconds, args.fold_partitions,
                                                  args.fold_batch, redis_url, groups))
    result["groups"] = {str(group): figures for group, figures in result["groups"].items()}
    result["headline_group"] = f"merged {bench_aggregator.MERGED}"
    result["headline"] = result["merged"]
    return result


def ingest_part(args, stamp: str) -> dict:
    ingest_args = bench_ingest.build_parser().parse_args([])
    ingest_args.records, ingest_args.meters, ingest_args.workers = args.records, args.ingest_meters, args.workers
    ingest_args.batch_size, ingest_args.concurrency = args.batch_size, args.concurrency
    began = time.perf_counter()
    records = bench_ingest.generate(args.records, meters=args.ingest_meters, seed=7,
                                    start_ms=int(time.time() * 1000) - 600_000)
    print(f"  {len(records):,} simulator records, {args.ingest_meters:,} meters (generated in "
          f"{time.perf_counter() - began:.1f} s); INFLUXDB_BATCH_SIZE={args.batch_size:,}, "
          f"{args.concurrency} writers, {args.workers} worker(s)")
    topic = f"bench-aggregations-{stamp.lower()}"
    databases: list[str] = []
    groups: list[str] = []
    prefixes: list[str] = []
    try:
        runs, cost = bench_ingest.run_on_off(ingest_args, records, topic, stamp, None, databases, groups, prefixes,
                                             args.pairs)
    finally:
        print("  cleaning up (databases, topic, consumer groups, Redis keys) ...")
        bench_ingest.cleanup(ingest_args, databases, [topic, f"{topic}.dlq"], groups, prefixes)
    print(f"  cost of aggregations: {cost:.1f}% (target <= {COST_TARGET:.0f}%)")
    return {"records": args.records, "pairs": args.pairs, "meters": args.ingest_meters, "workers": args.workers,
            "influxdb_batch_size": args.batch_size, "concurrency": args.concurrency,
            "runs": runs, "cost_percent": cost}


def freshness_part(args) -> dict:
    return bench_freshness.run(args.rate, args.seconds, args.warmup, args.batch, args.meters, args.poll,
                               args.drain, writer=not args.no_writer)


def main() -> int:
    args = build_parser().parse_args()
    bench_freshness.exit_on_sigterm()
    fold_target = args.fold_target if args.fold_target is not None else float(args.rate)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out: dict = {"timestamp": stamp, "cpus": os.cpu_count(), "settings": vars(args)}
    began = time.monotonic()

    parts = [
        ("fold", "1. Aggregator fold rate (Lua fold in Redis, pre-built summaries)", lambda: fold_part(args)),
        ("ingest", f"2. Ingest throughput, Kafka -> InfluxDB, aggregations off vs on, {args.records:,} records",
         lambda: ingest_part(args, stamp)),
        ("freshness", f"3. Freshness, produce -> /api/live, at {args.rate:,} readings/s for {args.seconds:.0f} s",
         lambda: freshness_part(args)),
    ]
    errors: dict[str, str] = {}
    for name, title, part in parts:
        if name in args.skip:
            continue
        print(f"\n== {title} ==", flush=True)
        part_began = time.monotonic()
        try:
            out[name] = part()
        except Exception as error:  # noqa: BLE001 - report it and go on with the other parts (SIGTERM, Ctrl-C stop the run)
            traceback.print_exc()
            errors[name] = f"{type(error).__name__}: {error}"
            print(f"  ERROR: {errors[name]}")
        print(f"  ({time.monotonic() - part_began:.0f} s)", flush=True)

    # (figure, value, target, verdict); verdict None = no target, shown for context
    rows: list[tuple[str, str, str, str]] = []
    checks: list[dict] = []

    def row(figure: str, value: str, target: str = "", ok: bool | None = None, error: bool = False) -> None:
        verdict = "ERROR" if error else ("" if ok is None else ("met" if ok else "NOT met"))
        rows.append((figure, value, target, verdict))
        if ok is not None or error:
            checks.append({"figure": figure, "value": value, "target": target, "ok": bool(ok) and not error})

    if "fold" in out:
        fold = out["fold"]
        head = fold["headline"]
        row(f"fold rate, merged reads of {bench_aggregator.MERGED}, {fold['batch']:,} readings/summary",
            f"{head['summaries_per_s']:,.0f} summaries/s")
        row("fold rate, readings represented (merged)", f"{head['readings_per_s']:,.0f} readings/s",
            f">= {fold_target:,.0f} readings/s", head["readings_per_s"] >= fold_target)
        grouped = fold["groups"][str(args.fold_group)]
        row(f"fold rate, one by one, {args.fold_group} per EVALSHA (context)",
            f"{grouped['summaries_per_s']:,.0f} /s, {grouped['readings_per_s']:,.0f} r/s")
        single = fold["groups"]["1"]
        row("fold rate, one summary per EVALSHA (context)",
            f"{single['summaries_per_s']:,.0f} /s, {single['readings_per_s']:,.0f} r/s")
    elif "fold" in errors:
        row("fold rate", errors["fold"][:40], f">= {fold_target:,.0f} readings/s", error=True)
    if "ingest" in out:
        ingest = out["ingest"]
        for mode in ("off", "on"):
            run = ingest["runs"][mode]
            median = f"median of {len(run['all_msgs_per_s'])}, " if len(run["all_msgs_per_s"]) > 1 else ""
            row(f"ingest, aggregations {mode} ({median}msgs/s)", f"{run['msgs_per_s']:,.0f}",
                "count == N", run["count_ok"])
        row("cost of aggregations (1 - on/off)", f"{ingest['cost_percent']:.1f}%", f"<= {COST_TARGET:.0f}%",
            ingest["cost_percent"] <= COST_TARGET)
    elif "ingest" in errors:
        row("cost of aggregations", errors["ingest"][:40], f"<= {COST_TARGET:.0f}%", error=True)
    if "freshness" in out:
        fresh = out["freshness"]
        per_second = fresh["per_second"]

        def ms(value: float | None) -> str:
            return "n/a" if value is None else f"{value:,.0f} ms"

        row("freshness load achieved", f"{fresh['achieved_per_s']:,.0f} readings/s",
            f">= {LOAD_SHARE * args.rate:,.0f} readings/s", fresh["achieved_per_s"] >= LOAD_SHARE * args.rate)
        row(f"freshness p50 per event second (n={per_second['n']})", ms(per_second["p50_ms"]))
        row(f"freshness p99 per event second, {per_second['never_complete']} never complete",
            ms(per_second["p99_ms"]), f"<= {FRESHNESS_P99_TARGET_MS:,.0f} ms, all complete", fresh["met"])
        row("API polls (poller process), effective interval", f"{fresh['polls']:,}, {fresh['poll_interval_ms']:.0f} ms",
            f"{args.poll * 1000:.0f} ms asked")
    elif "freshness" in errors:
        row("freshness p99", errors["freshness"][:40], f"<= {FRESHNESS_P99_TARGET_MS:,.0f} ms", error=True)

    out["checks"] = checks
    out["errors"] = errors
    out["all_met"] = bool(checks) and all(check["ok"] for check in checks)
    out["seconds"] = time.monotonic() - began
    print(f"\n== Summary ({os.cpu_count()} CPUs, {out['seconds']:.0f} s) ==")
    print(f"  {'figure':<50} {'value':>22}  {'target':<26} result")
    for figure, value, target, verdict in rows:
        print(f"  {figure:<50} {value:>22}  {target:<26} {verdict}")
    if args.skip:
        print(f"  skipped: {', '.join(args.skip)}")
    path = RESULTS / f"aggregations-{stamp}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"\nresults: {path}")
    return 0 if out["all_met"] and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
