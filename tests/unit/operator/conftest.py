"""Fixtures of the operator tests."""

from __future__ import annotations

from typing import Any

import pytest
from sgc_specs import defaulted_spec


@pytest.fixture
def spec() -> dict[str, Any]:
    """A minimal spec, defaulted like the API server does."""
    return defaulted_spec()
