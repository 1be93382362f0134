"""Daily load curves: the share of a meter's base load drawn at each minute of the local day.

Each building type has its own shape, made of a floor plus Gaussian bumps over the hour of the
day (wrapping around midnight): homes peak in the morning and, higher, in the evening; offices
and shops plateau during business hours; industry runs shifts; street lighting works at night.
The curves are tabulated per minute once, so the hot loop only indexes a list.
"""

from __future__ import annotations

import math

MINUTES_PER_DAY = 1440

# (floor, [(peak hour, width in hours, height), ...]) per building type.
_SHAPES: dict[str, tuple[float, list[tuple[float, float, float]]]] = {
    "residential": (0.45, [(7.5, 1.3, 0.55), (19.0, 2.0, 0.95), (13.0, 3.0, 0.15)]),
    "apartment": (0.40, [(7.0, 1.2, 0.50), (20.0, 2.2, 0.90)]),
    "commercial": (0.25, [(9.0, 1.5, 0.70), (13.0, 3.5, 0.85), (17.0, 1.5, 0.55)]),
    "industrial": (0.55, [(10.0, 4.0, 0.45), (15.0, 3.0, 0.35)]),
    "agricultural": (0.30, [(6.0, 1.5, 0.60), (14.0, 3.0, 0.70), (18.5, 1.5, 0.40)]),
    "municipal": (0.20, [(0.0, 4.5, 0.90), (22.0, 2.0, 0.30)]),
}


def _hour_distance(a: float, b: float) -> float:
    """Distance between two hours of the day on the 24-hour circle."""
    difference = abs(a - b) % 24.0
    return min(difference, 24.0 - difference)


def load_factor(building_type: str, hour: float) -> float:
    """Load factor (multiple of the meter's base load, > 0) at local ``hour`` in [0, 24)."""
    floor, bumps = _SHAPES[building_type]
    return floor + sum(
        height * math.exp(-0.5 * (_hour_distance(hour, peak) / width) ** 2) for peak, width, height in bumps
    )


BUILDING_CURVES: dict[str, list[float]] = {
    name: [load_factor(name, minute / 60.0) for minute in range(MINUTES_PER_DAY)] for name in _SHAPES
}
"""Per building type, the load factor at each minute of the local day."""


def local_minute(epoch_ms: int, utc_offset_hours: int) -> int:
    """Minute of the local day (0..1439) of an instant, at a fixed UTC offset."""
    return ((epoch_ms // 60_000) + utc_offset_hours * 60) % MINUTES_PER_DAY
