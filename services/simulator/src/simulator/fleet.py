"""The simulated meter fleet: regions, building types, and the static part of every meter.

Pure: a fleet is a function of (meter count, seed, fault fractions). Everything that does not
change from one reading of a meter to the next is computed here once, including the JSON bytes
around the per-reading fields, so the hot loop only formats two numbers and a timestamp.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import orjson

from simulator.loadcurve import BUILDING_CURVES

READING_INTERVAL_HOURS = 0.25
"""Each reading is the energy of a nominal 15-minute interval: ``consumption_kwh = kW * 0.25``."""


@dataclass(frozen=True, slots=True)
class Region:
    """A utility service territory: meters cluster around its centre."""

    name: str
    latitude: float
    longitude: float
    spread_km: float
    utc_offset_hours: int
    weight: float
    """Share of the fleet (normalised over all regions)."""


@dataclass(frozen=True, slots=True)
class BuildingType:
    """A kind of premises: its typical average load and share of the fleet."""

    name: str
    base_kw: float
    weight: float


REGIONS: tuple[Region, ...] = (
    Region("pacific-northwest", 47.6062, -122.3321, 45.0, -8, 0.07),
    Region("bay-area", 37.7749, -122.4194, 35.0, -8, 0.08),
    Region("southern-california", 34.0522, -118.2437, 60.0, -8, 0.14),
    Region("desert-southwest", 33.4484, -112.0740, 40.0, -7, 0.06),
    Region("rocky-mountain", 39.7392, -104.9903, 35.0, -7, 0.05),
    Region("texas-gulf-coast", 29.7604, -95.3698, 55.0, -6, 0.11),
    Region("great-lakes", 41.8781, -87.6298, 50.0, -6, 0.12),
    Region("ohio-valley", 39.9612, -82.9988, 40.0, -5, 0.07),
    Region("southeast-piedmont", 33.7490, -84.3880, 45.0, -5, 0.08),
    Region("florida-peninsula", 28.5383, -81.3792, 50.0, -5, 0.08),
    Region("mid-atlantic", 39.9526, -75.1652, 40.0, -5, 0.09),
    Region("new-england", 42.3601, -71.0589, 35.0, -5, 0.05),
)

BUILDING_TYPES: tuple[BuildingType, ...] = (
    BuildingType("residential", 1.2, 0.70),
    BuildingType("apartment", 0.7, 0.12),
    BuildingType("commercial", 9.0, 0.10),
    BuildingType("industrial", 65.0, 0.03),
    BuildingType("agricultural", 6.0, 0.03),
    BuildingType("municipal", 4.0, 0.02),
)

assert {b.name for b in BUILDING_TYPES} == set(BUILDING_CURVES), "every building type needs a load curve"


@dataclass(slots=True)
class Fleet:
    """Per-meter columns (index = meter number) plus the pre-encoded JSON around each reading.

    A valid reading of meter ``i`` is ``head[i] + timestamp + middle + suffix[i]``: ``head`` is
    ``{"meter_id":"...","timestamp":``, ``suffix`` holds status, region, building type and
    coordinates, which never change for a meter.
    """

    meter_ids: list[str]
    keys: list[bytes]
    region: list[int]
    building: list[int]
    latitude: list[float]
    longitude: list[float]
    base_kw: list[float]
    """Average power of this meter at curve factor 1.0."""
    klass: list[int]
    """``building * len(REGIONS) + region``: the load factor of a batch is looked up per class."""
    faulty: list[bool]
    silent: list[bool]
    head: list[bytes]
    suffix: list[bytes]

    def __len__(self) -> int:
        return len(self.meter_ids)

    def status(self, index: int) -> str:
        """Status the meter reports (faulty meters always report ``fault``)."""
        return "fault" if self.faulty[index] else "ok"

    def static_fields(self, index: int) -> dict[str, object]:
        """The meter's fields that never change, as a dict (used by the slow paths)."""
        return {
            "meter_id": self.meter_ids[index],
            "region": REGIONS[self.region[index]].name,
            "status": self.status(index),
            "building_type": BUILDING_TYPES[self.building[index]].name,
            "latitude": self.latitude[index],
            "longitude": self.longitude[index],
        }


def meter_id(index: int) -> str:
    """The id of meter number ``index`` (stable across runs and seeds)."""
    return f"MTR-{index:08d}"


def _pick(weights: list[float], draw: float) -> int:
    """Index chosen by a uniform draw in [0, 1) over cumulative normalised weights."""
    total = 0.0
    for index, weight in enumerate(weights):
        total += weight
        if draw < total:
            return index
    return len(weights) - 1


def build_fleet(meters: int, seed: int, faulty_fraction: float = 0.0, silent_fraction: float = 0.0) -> Fleet:
    """Place ``meters`` meters over the regions and building types, deterministically by seed.

    Faulty and silent meters are drawn independently, so a meter can be both (it reports
    ``fault`` until it goes quiet).
    """
    if meters <= 0:
        raise ValueError("meters must be at least 1")
    rng = random.Random(f"fleet:{seed}")
    region_total = sum(r.weight for r in REGIONS)
    region_weights = [r.weight / region_total for r in REGIONS]
    building_total = sum(b.weight for b in BUILDING_TYPES)
    building_weights = [b.weight / building_total for b in BUILDING_TYPES]

    fleet = Fleet([], [], [], [], [], [], [], [], [], [], [], [])
    for index in range(meters):
        region_index = _pick(region_weights, rng.random())
        building_index = _pick(building_weights, rng.random())
        region = REGIONS[region_index]
        # Gaussian scatter around the centre, in km, converted to degrees at that latitude.
        north_km = rng.gauss(0.0, region.spread_km / 2.0)
        east_km = rng.gauss(0.0, region.spread_km / 2.0)
        latitude = round(region.latitude + north_km / 111.0, 5)
        longitude = round(region.longitude + east_km / (111.0 * math.cos(math.radians(region.latitude))), 5)
        # Premises of one type still differ a lot in size: log-normal around the type's base.
        base_kw = BUILDING_TYPES[building_index].base_kw * rng.lognormvariate(0.0, 0.35)
        faulty = rng.random() < faulty_fraction
        silent = rng.random() < silent_fraction

        ident = meter_id(index)
        fleet.meter_ids.append(ident)
        fleet.keys.append(ident.encode())
        fleet.region.append(region_index)
        fleet.building.append(building_index)
        fleet.latitude.append(latitude)
        fleet.longitude.append(longitude)
        fleet.base_kw.append(base_kw)
        fleet.klass.append(building_index * len(REGIONS) + region_index)
        fleet.faulty.append(faulty)
        fleet.silent.append(silent)
        fleet.head.append(b'{"meter_id":' + orjson.dumps(ident) + b',"timestamp":')
        static = orjson.dumps(
            {
                "status": "fault" if faulty else "ok",
                "region": region.name,
                "building_type": BUILDING_TYPES[building_index].name,
                "latitude": latitude,
                "longitude": longitude,
            }
        )
        fleet.suffix.append(b"," + static[1:])
    return fleet
