"""Smart-meter reading simulator.

Pure core (no network): :mod:`fleet`, :mod:`loadcurve`, :mod:`timefmt`, :mod:`malformed`,
:mod:`generator`, :mod:`pacing`. Shell: :mod:`kafka` (producer) and :mod:`cli`.

For tests: ``generate(...)`` returns deterministic ``(key, value)`` records, and
``produce(records, brokers, topic)`` sends them and waits for the acknowledgements.
"""

from simulator.generator import (
    LabelledRecord,
    ReadingGenerator,
    SimulationConfig,
    generate,
    generate_labelled,
)
from simulator.kafka import ProduceResult, produce

__all__ = [
    "LabelledRecord",
    "ProduceResult",
    "ReadingGenerator",
    "SimulationConfig",
    "generate",
    "generate_labelled",
    "produce",
]
