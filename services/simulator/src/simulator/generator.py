"""Readings, batch by batch: the pure core of the simulator (no Kafka, no clock unless given one).

The stream is a sequence of *rounds*; in each round every meter that still reports sends one
reading, in meter order. In backfill mode (``start_ms`` set) round ``r`` has event time
``start_ms + r * step_ms``; in live mode every batch takes its event time from the clock.

Everything random is drawn from generators seeded by ``seed``, one reading at a time in stream
order, so the records do not depend on how the stream is cut into batches: the same
configuration always yields the same bytes (in backfill mode; live mode stamps wall-clock time).
Malformed and late readings are placed by geometric gaps on their own random streams.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from simulator import timefmt
from simulator.fleet import BUILDING_TYPES, READING_INTERVAL_HOURS, REGIONS, Fleet, build_fleet
from simulator.loadcurve import BUILDING_CURVES, local_minute
from simulator.malformed import malform

VALID = "valid"
"""Label of a reading that satisfies the input contract."""


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What to simulate. Fractions are in [0, 1]."""

    meters: int = 100_000
    seed: int = 0
    start_ms: int | None = None
    """Event time of the first round (backfill); None: event time is the clock's now (live)."""
    step_ms: int = 1000
    """Event-time advance from one round to the next in backfill mode."""
    timestamp_format: str = "rfc3339"
    faulty_fraction: float = 0.0
    """Share of meters that always report status ``fault``."""
    silent_fraction: float = 0.0
    """Share of meters that stop reporting once ``silent_after_s`` of event time have passed."""
    silent_after_s: float = 300.0
    malformed_fraction: float = 0.0
    """Share of records replaced by one that violates the contract."""
    late_fraction: float = 0.0
    """Share of valid readings whose event time lies 1s..``late_max_s`` in the past."""
    late_max_s: float = 60.0

    def __post_init__(self) -> None:
        if self.meters < 1:
            raise ValueError("--meters must be at least 1")
        if self.step_ms < 0:
            raise ValueError("--step-ms cannot be negative")
        if self.timestamp_format not in timefmt.TIMESTAMP_FORMATS:
            raise ValueError(
                f"unknown timestamp format {self.timestamp_format!r}: "
                f"use one of {', '.join(timefmt.TIMESTAMP_FORMATS)}"
            )
        for name in ("faulty_fraction", "silent_fraction", "malformed_fraction", "late_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1 (got {value})")
        if self.silent_after_s < 0 or self.late_max_s < 1:
            raise ValueError("silent_after_s must be >= 0 and late_max_s >= 1")


@dataclass(slots=True)
class Batch:
    """Consecutive records of the stream, ready for Kafka: ``keys[i]`` is the key of ``values[i]``."""

    keys: list[bytes]
    values: list[bytes]
    event_ms: int
    """Event time of the batch's on-time readings."""
    valid: int = 0
    malformed: int = 0
    faulty: int = 0
    """Valid readings with status ``fault``."""
    late: int = 0
    """Valid readings stamped in the past."""
    labels: list[str] | None = None
    """Per record, ``valid`` or ``malformed:<variant>`` (only when asked for)."""
    late_indices: list[int] = field(default_factory=list)


class _GapStream:
    """Positions in the stream hit with probability ``fraction`` each, drawn as geometric gaps."""

    def __init__(self, fraction: float, rng: random.Random) -> None:
        self._rng = rng
        self._log_miss = math.log1p(-fraction) if 0.0 < fraction < 1.0 else None
        self._fraction = fraction
        self.next = self._gap() - 1 if fraction > 0.0 else -1

    def _gap(self) -> int:
        if self._fraction >= 1.0:
            return 1
        # 1 - random() is in (0, 1]: the logarithm is finite.
        return int(math.log(1.0 - self._rng.random()) / self._log_miss) + 1

    def hits(self, first: int, end: int) -> list[int]:
        """Stream positions in [first, end) that are hit, as offsets from ``first``."""
        found = []
        if self.next < 0:
            return found
        while self.next < end:
            found.append(self.next - first)
            self.next += self._gap()
        return found


class ReadingGenerator:
    """Produces the stream batch by batch; see the module docstring for its shape."""

    def __init__(
        self,
        config: SimulationConfig,
        clock: Callable[[], float] = time.time,
        fleet: Fleet | None = None,
    ) -> None:
        self.config = config
        self.fleet = fleet or build_fleet(config.meters, config.seed, config.faulty_fraction, config.silent_fraction)
        self._clock = clock
        self._origin_ms = config.start_ms if config.start_ms is not None else int(clock() * 1000)
        self._silent_after_ms = int(config.silent_after_s * 1000)
        self._everyone = list(range(len(self.fleet)))
        self._loud = [index for index in self._everyone if not self.fleet.silent[index]]
        if len(self._loud) == len(self._everyone):
            self._loud = self._everyone
        self.silent_meters = len(self._everyone) - len(self._loud)
        """Meters that stop reporting (whether or not they have gone quiet yet)."""
        self.quiet = False
        """True once the silent meters have stopped reporting."""
        seed = config.seed
        self._noise = random.Random(f"noise:{seed}")
        self._format_choice = random.Random(f"format:{seed}")
        self._malformed_rng = random.Random(f"malformed:{seed}")
        self._late_rng = random.Random(f"late:{seed}")
        self._malformed_at = _GapStream(config.malformed_fraction, random.Random(f"malformed-at:{seed}"))
        self._late_at = _GapStream(config.late_fraction, random.Random(f"late-at:{seed}"))
        # kWh at curve factor 1.0: the nominal interval's energy.
        self._base_kwh = [kw * READING_INTERVAL_HOURS for kw in self.fleet.base_kw]
        self._factor_minute = -1
        self._factors: list[float] = []
        self.round = 0
        self._position = 0
        self._round_event_ms = self._origin_ms
        self.produced = 0
        """Records emitted so far (the stream position of the next one)."""

    # Event time -----------------------------------------------------------------------------

    def _event_ms(self) -> int:
        if self.config.start_ms is None:
            return int(self._clock() * 1000)
        return self._round_event_ms

    def _order(self, event_ms: int) -> list[int]:
        if self._loud is not self._everyone and event_ms - self._origin_ms >= self._silent_after_ms:
            self.quiet = True
            return self._loud
        return self._everyone

    def _load_factors(self, event_ms: int) -> list[float]:
        """Curve factor per meter class (building type x region) at this minute, cached."""
        minute = event_ms // 60_000
        if minute != self._factor_minute:
            self._factor_minute = minute
            self._factors = [
                BUILDING_CURVES[building.name][local_minute(event_ms, region.utc_offset_hours)]
                for building in BUILDING_TYPES
                for region in REGIONS
            ]
        return self._factors

    # The stream -----------------------------------------------------------------------------

    def next_batch(self, size: int, labels: bool = False) -> Batch:
        """The next ``size`` records or fewer (a batch never spans two rounds); never empty."""
        if size < 1:
            raise ValueError("batch size must be at least 1")
        event_ms = self._event_ms()
        order = self._order(event_ms)
        while self._position >= len(order):
            # Only possible when every meter is silent: rounds keep advancing, nobody reports.
            self.round += 1
            self._position = 0
            self._round_event_ms = self._origin_ms + self.round * self.config.step_ms
            event_ms = self._event_ms()
            order = self._order(event_ms)
            if not order:
                raise RuntimeError("every meter is silent: nothing left to produce")
        meters = order[self._position : self._position + size]
        self._position += len(meters)

        fleet = self.fleet
        head, suffix, base, klass = fleet.head, fleet.suffix, self._base_kwh, fleet.klass
        factor = self._load_factors(event_ms)
        rnd = self._noise.random
        # kWh = base * curve * noise (triangular in [0.8, 1.2]); peak kW = average kW * [1.1, 1.7).
        tail = b',"consumption_kwh":%.4f,"peak_load":%.3f%b'
        if self.config.timestamp_format == "mixed":
            variants = timefmt.mixed_variants(event_ms)
            pick = self._format_choice.randrange
            template = b"%b%b" + tail
            values = [
                template
                % (
                    head[m],
                    variants[pick(4)],
                    kwh := base[m] * factor[klass[m]] * (0.8 + 0.2 * (rnd() + rnd())),
                    kwh * (4.4 + 2.4 * rnd()),
                    suffix[m],
                )
                for m in meters
            ]
        else:
            template = b"%b" + timefmt.encode(event_ms, self.config.timestamp_format) + tail
            values = [
                template
                % (
                    head[m],
                    kwh := base[m] * factor[klass[m]] * (0.8 + 0.2 * (rnd() + rnd())),
                    kwh * (4.4 + 2.4 * rnd()),
                    suffix[m],
                )
                for m in meters
            ]
        keys = [fleet.keys[m] for m in meters]

        first = self.produced
        self.produced += len(values)
        batch = Batch(keys, values, event_ms)
        record_labels = [VALID] * len(values) if labels else None
        malformed_at = self._malformed_at.hits(first, self.produced)
        late_at = self._late_at.hits(first, self.produced)
        malformed_set = set(malformed_at)
        for offset in late_at:
            if offset not in malformed_set:
                values[offset] = self._make_late(values[offset], event_ms)
                batch.late_indices.append(offset)
        for offset in malformed_at:
            variant, values[offset] = malform(orjson.loads(values[offset]), self._malformed_rng)
            if record_labels is not None:
                record_labels[offset] = f"malformed:{variant}"

        batch.malformed = len(malformed_at)
        batch.valid = len(values) - batch.malformed
        batch.late = len(batch.late_indices)
        if self.config.faulty_fraction > 0.0:
            faulty = fleet.faulty
            batch.faulty = sum(1 for m in meters if faulty[m]) - sum(1 for o in malformed_at if faulty[meters[o]])
        batch.labels = record_labels
        return batch

    def _make_late(self, value: bytes, event_ms: int) -> bytes:
        """The same reading stamped 1s..late_max_s before the batch's event time."""
        late_ms = event_ms - int(self._late_rng.uniform(1.0, self.config.late_max_s) * 1000)
        reading = orjson.loads(value)
        if self.config.timestamp_format == "mixed":
            stamp = self._late_rng.choice(timefmt.mixed_variants(late_ms))
        else:
            stamp = timefmt.encode(late_ms, self.config.timestamp_format)
        reading["timestamp"] = orjson.loads(stamp)
        return orjson.dumps(reading)


DEFAULT_START_MS = 1_714_521_600_000
"""2024-05-01T00:00:00Z: the default first event time of :func:`generate` (fixed, so it is pure)."""


@dataclass(frozen=True, slots=True)
class LabelledRecord:
    """A record with what the simulator meant it to be: ``label`` is ``valid`` or ``malformed:<variant>``."""

    key: bytes
    value: bytes
    label: str
    late: bool


def generate_labelled(
    count: int,
    *,
    meters: int = 1000,
    seed: int = 0,
    start_ms: int = DEFAULT_START_MS,
    step_ms: int = 1000,
    timestamp_format: str = "rfc3339",
    faulty_fraction: float = 0.0,
    silent_fraction: float = 0.0,
    silent_after_s: float = 300.0,
    malformed_fraction: float = 0.0,
    late_fraction: float = 0.0,
    late_max_s: float = 60.0,
    batch_size: int = 10_000,
) -> list[LabelledRecord]:
    """Like :func:`generate`, each record labelled with what it was made to be."""
    config = SimulationConfig(
        meters=meters,
        seed=seed,
        start_ms=start_ms,
        step_ms=step_ms,
        timestamp_format=timestamp_format,
        faulty_fraction=faulty_fraction,
        silent_fraction=silent_fraction,
        silent_after_s=silent_after_s,
        malformed_fraction=malformed_fraction,
        late_fraction=late_fraction,
        late_max_s=late_max_s,
    )
    generator = ReadingGenerator(config)
    records: list[LabelledRecord] = []
    while len(records) < count:
        batch = generator.next_batch(min(batch_size, count - len(records)), labels=True)
        late = set(batch.late_indices)
        assert batch.labels is not None
        records.extend(
            LabelledRecord(key, value, label, offset in late)
            for offset, (key, value, label) in enumerate(zip(batch.keys, batch.values, batch.labels))
        )
    return records


def generate(
    count: int,
    *,
    meters: int = 1000,
    seed: int = 0,
    start_ms: int = DEFAULT_START_MS,
    step_ms: int = 1000,
    timestamp_format: str = "rfc3339",
    faulty_fraction: float = 0.0,
    silent_fraction: float = 0.0,
    silent_after_s: float = 300.0,
    malformed_fraction: float = 0.0,
    late_fraction: float = 0.0,
    late_max_s: float = 60.0,
) -> list[tuple[bytes, bytes]]:
    """``count`` Kafka records ``(key, value)`` of a deterministic backfill; no Kafka, no clock.

    Rounds of ``meters`` readings (meter ``MTR-00000000`` first) start at ``start_ms`` (epoch
    milliseconds) and advance by ``step_ms``; the key is the meter id. The same arguments always
    give the same bytes. See :class:`SimulationConfig` for the fractions.
    """
    config = SimulationConfig(
        meters=meters,
        seed=seed,
        start_ms=start_ms,
        step_ms=step_ms,
        timestamp_format=timestamp_format,
        faulty_fraction=faulty_fraction,
        silent_fraction=silent_fraction,
        silent_after_s=silent_after_s,
        malformed_fraction=malformed_fraction,
        late_fraction=late_fraction,
        late_max_s=late_max_s,
    )
    generator = ReadingGenerator(config)
    records: list[tuple[bytes, bytes]] = []
    while len(records) < count:
        batch = generator.next_batch(min(10_000, count - len(records)))
        records.extend(zip(batch.keys, batch.values))
    return records
