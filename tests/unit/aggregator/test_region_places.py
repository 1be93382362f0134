"""SMARTGRID_REGION_PLACES: where the dashboard's map draws regions whose names say nothing of a
place (region-01, ...) or whose meters send no coordinates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aggregator.settings import AggregatorSettings, parse_region_places
from aggregator.views import regions_view


def test_places_are_coordinates_or_a_state_name():
    assert parse_region_places(" region-01 = 47.6:-122.3 , region-02=New York,,") == {
        "region-01": (47.6, -122.3), "region-02": "New York"}
    assert parse_region_places("") == {}


@pytest.mark.parametrize("text, message", [
    ("region-01", "write region=lat:lon or region=state"),
    ("=Texas", "write region=lat:lon or region=state"),
    ("region-01=north:west", "two numbers"),
    ("region-01=91:0", "latitude in [-90, 90]"),
    ("region-01=0:181", "longitude in [-180, 180]"),
])
def test_a_bad_place_stops_start_up_saying_what_to_write(monkeypatch, text, message):
    monkeypatch.setenv("SMARTGRID_REGION_PLACES", text)
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AggregatorSettings()


def test_a_configured_place_wins_over_the_meters_coordinates_and_says_so():
    window = [{b"sum:region-01": b"3", b"cnt:region-01": b"1", b"sum:region-02": b"2", b"cnt:region-02": b"1",
               b"sum:north": b"1", b"cnt:north": b"1", b"sum:nowhere": b"1", b"cnt:nowhere": b"1"}]
    geo = {b"lat:region-01": b"10", b"lon:region-01": b"20", b"n:region-01": b"1",
           b"lat:north": b"120", b"lon:north": b"20", b"n:north": b"2"}
    places = {"region-01": (47.6, -122.3), "region-02": "Texas"}
    rows = {row["region"]: row for row in regions_view(window, geo, {}, 60, places)}
    assert (rows["region-01"]["lat"], rows["region-01"]["lon"], rows["region-01"]["placed_by"]) == (47.6, -122.3, "config")
    assert (rows["region-02"]["state"], rows["region-02"]["lat"], rows["region-02"]["placed_by"]) == ("Texas", None, "config")
    assert (rows["north"]["lat"], rows["north"]["placed_by"], rows["north"]["state"]) == (60.0, "meters", None)
    # Known to the product, placed by nothing: still a row (the map lists it under itself).
    assert (rows["nowhere"]["lat"], rows["nowhere"]["placed_by"]) == (None, None)
