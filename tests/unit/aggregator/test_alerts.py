"""Region alerts' pure part (alerts.py): counts per region, the episode rules (hold time,
hysteresis, repeat) and the webhook bodies."""

from __future__ import annotations

import orjson

from aggregator import alerts
from aggregator.alerts import ALERT_NAME, Episode, Message, Rule, evaluate, region_counts

RULE = Rule("fault", 0.3, 0.24)


def counts(fault: int, total: int = 10) -> alerts.RegionCounts:
    return region_counts({"north": total}, {"north": fault}, {("fault", "north"): fault})


def step(episodes: dict, fault: int, now: float, hold: float = 10.0, repeat: float = 0.0) -> list[alerts.Transition]:
    transitions = evaluate(counts(fault), episodes, [RULE], hold, repeat, now)
    for transition in transitions:
        if transition.episode is None:
            episodes.pop(transition.key)
        else:
            episodes[transition.key] = transition.episode
    return transitions


def test_region_counts_split_ok_known_statuses_and_other():
    row = region_counts({"r": 10}, {"r": 6}, {("fault", "r"): 3, ("offline", "r"): 1, ("clock_skew", "r"): 0})["r"]
    assert row == {"fault": 3, "offline": 1, "clock_skew": 0, "other": 2, "ok": 4, "total": 10}
    assert alerts.share(row, "fault") == 0.3
    assert alerts.share({"total": 0}, "fault") == 0.0


def test_an_alert_fires_once_after_the_hold_time_and_resolves_once_below_the_clear_level():
    episodes: dict = {}
    assert [t.notify for t in step(episodes, 5, 100.0)] == [None]  # pending
    assert step(episodes, 5, 105.0) == []  # held for 5 of 10 s: nothing
    fired = step(episodes, 4, 110.0)
    assert [t.notify for t in fired] == ["firing"] and episodes[("fault", "north")].fired == 110.0
    assert step(episodes, 3, 200.0) == []  # 30% = threshold: still firing, not sent again
    # Hysteresis: 25% is under the threshold (30%) but not under the clear level (24%).
    assert evaluate(counts(5, 20), episodes, [RULE], 10.0, 0.0, 300.0) == []
    resolved = step(episodes, 2, 400.0)
    assert [t.notify for t in resolved] == ["resolved"] and resolved[0].ended == 400.0
    assert episodes == {}
    assert step(episodes, 2, 500.0) == []


def test_a_share_that_drops_before_the_hold_time_never_fires():
    episodes: dict = {}
    step(episodes, 5, 0.0)
    assert [(t.notify, t.episode) for t in step(episodes, 2, 5.0)] == [(None, None)]
    assert episodes == {}


def test_a_firing_alert_is_repeated_only_with_a_repeat_interval():
    episodes = {("fault", "north"): Episode("firing", 0.0, 10.0, 10.0)}
    assert step(episodes, 5, 100.0, repeat=0.0) == []
    again = step(episodes, 5, 100.0, repeat=60.0)
    assert [t.notify for t in again] == ["firing"] and episodes[("fault", "north")].fired == 10.0
    assert step(episodes, 5, 120.0, repeat=60.0) == []


def test_a_region_that_disappears_resolves_its_alert():
    episodes = {("fault", "gone"): Episode("firing", 0.0, 1.0, 1.0)}
    (transition,) = evaluate(counts(0), episodes, [RULE], 0.0, 0.0, 50.0)
    assert transition.key == ("fault", "gone") and transition.notify == "resolved"


def test_alertmanager_body_is_a_version_4_webhook_with_one_alert():
    message = Message("firing", ("fault", "north"), 0.5, 0.3, 1_700_000_000.25, 0.0, "warning", 5, 10)
    body = orjson.loads(alerts.body(message, "alertmanager", external_url="https://dash.example"))
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "smartgrid"
    (alert,) = body["alerts"]
    assert alert["labels"] == {"alertname": ALERT_NAME, "region": "north", "status": "fault", "severity": "warning"}
    assert alert["startsAt"] == "2023-11-14T22:13:20.250Z" and alert["endsAt"] == alerts.NEVER
    assert alert["fingerprint"] == alerts.fingerprint(alert["labels"]) and len(alert["fingerprint"]) == 16
    assert body["commonLabels"] == alert["labels"] and alert["generatorURL"] == "https://dash.example"
    ended = Message("resolved", ("fault", "north"), 0.1, 0.3, 1_700_000_000.25, 1_700_000_100.0, "warning", 1, 10)
    assert orjson.loads(alerts.body(ended, "alertmanager"))["alerts"][0]["endsAt"] == "2023-11-14T22:15:00.000Z"


def test_slack_body_is_one_line_of_text():
    message = Message("resolved", ("offline", "west"), 0.05, 0.2, 0.0, 10.0, "warning", 1, 20)
    assert orjson.loads(alerts.body(message, "slack")) == {
        "text": "[RESOLVED] region west: offline meters are back to 5.0% (1 of 20)"
    }


def test_episodes_and_keys_round_trip_through_their_redis_form():
    episode = Episode("pending", 1.5, 0.0, 0.0, 0.4)
    assert Episode.from_json(episode.to_json()) == episode
    key = ("fault", 'a "region": with, [odd] chars')
    assert alerts.field_key(alerts.key_field(key)) == key
