"""Region alerts, the pure part: per-region status counts, when a region's share of meters in a
status crosses its threshold and when it recovers, and the webhook bodies that say so.

No network here: ``notifier.py`` reads the counts from Redis, keeps the episodes there and posts
the bodies. A region/status pair goes through at most one episode at a time:

    (none) --share >= threshold--> pending --held for ``hold`` s--> firing --share < clear--> (none)
                                   pending --share < threshold----> (none)

``firing`` sends one notification, its end one ``resolved`` (and, with a repeat interval, the
firing one again every interval). The clear level sits below the threshold (hysteresis): a share
hovering at the threshold neither fires twice nor flaps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from smartgrid_common.contracts import STATUSES_KNOWN

ALERT_STATUSES = tuple(status for status in STATUSES_KNOWN if status != "ok")
"""The statuses a region alert can be about (every non-ok status the product knows)."""
GAUGE_STATUSES = (*STATUSES_KNOWN, "other")
"""The ``status`` label values of the region gauges: the known statuses, and ``other`` for any
status a meter sent that the product does not know (bounded: regions x 5)."""
ALERT_NAME = "SmartGridRegionMeterStatus"
NEVER = "0001-01-01T00:00:00Z"  # Alertmanager's "no end yet"

RegionCounts = dict[str, dict[str, int]]
"""region -> {status (GAUGE_STATUSES): meters, "total": meters known in the region}."""


def region_counts(known: Mapping[str, int], non_ok: Mapping[str, int], by_status: Mapping[tuple[str, str], int]) -> RegionCounts:
    """Per-region counts from what Redis holds: ``known`` meters per region, ``non_ok`` meters per
    region (every status but ok) and ``by_status`` (status, region) for the known non-ok statuses."""
    counts: RegionCounts = {}
    for region, total in known.items():
        row = {status: int(by_status.get((status, region), 0)) for status in ALERT_STATUSES}
        alerting = int(non_ok.get(region, 0))
        row["other"] = max(0, alerting - sum(row.values()))
        row["ok"] = max(0, int(total) - alerting)
        row["total"] = int(total)
        counts[region] = row
    return counts


def share(row: Mapping[str, int], status: str) -> float:
    """The share of a region's meters in ``status`` (0 for a region without meters)."""
    total = row.get("total", 0)
    return row.get(status, 0) / total if total else 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    """Alert when ``status`` reaches ``threshold`` of a region's meters; clear below ``clear``."""

    status: str
    threshold: float
    clear: float


@dataclass(slots=True)
class Episode:
    """One region/status pair above its threshold: pending since ``since``, firing from
    ``fired`` (epoch seconds), last notified at ``sent``."""

    phase: str  # "pending" or "firing"
    since: float
    fired: float = 0.0
    sent: float = 0.0
    share: float = 0.0

    def to_json(self) -> bytes:
        return orjson.dumps({"phase": self.phase, "since": self.since, "fired": self.fired, "sent": self.sent,
                             "share": self.share})

    @classmethod
    def from_json(cls, raw: bytes) -> Episode:
        data = orjson.loads(raw)
        return cls(data["phase"], float(data["since"]), float(data.get("fired", 0.0)), float(data.get("sent", 0.0)),
                   float(data.get("share", 0.0)))


Key = tuple[str, str]
"""(status, region)."""


def key_field(key: Key) -> bytes:
    """The Redis hash field of an episode (JSON: region names may contain any character)."""
    return orjson.dumps(list(key))


def field_key(raw: bytes) -> Key:
    """Inverse of :func:`key_field`."""
    status, region = orjson.loads(raw)
    return status, region


@dataclass(slots=True)
class Transition:
    """What one evaluation changes for one pair: the episode to store (None: delete it) and the
    notification to send (``firing``, ``resolved`` or None)."""

    key: Key
    episode: Episode | None
    notify: str | None = None
    share: float = 0.0
    ended: float = 0.0


def evaluate(counts: RegionCounts, episodes: Mapping[Key, Episode], rules: Iterable[Rule], hold: float,
             repeat: float, now: float) -> list[Transition]:
    """The transitions of every region/status pair at ``now`` (epoch seconds), given the current
    counts and the stored episodes. Pairs whose episode does not change are left out."""
    transitions: list[Transition] = []
    for rule in rules:
        regions = set(counts) | {region for status, region in episodes if status == rule.status}
        for region in sorted(regions):
            key = (rule.status, region)
            value = share(counts.get(region, {}), rule.status)
            episode = episodes.get(key)
            if episode is None:
                if value >= rule.threshold:
                    if hold <= 0:
                        transitions.append(Transition(key, Episode("firing", now, now, now, value), "firing", value))
                    else:
                        transitions.append(Transition(key, Episode("pending", now, share=value), None, value))
            elif episode.phase == "pending":
                if value < rule.threshold:
                    transitions.append(Transition(key, None, None, value))
                elif now - episode.since >= hold:
                    fired = Episode("firing", episode.since, now, now, value)
                    transitions.append(Transition(key, fired, "firing", value))
            elif value < rule.clear:
                transitions.append(Transition(key, None, "resolved", value, ended=now))
            elif repeat > 0 and now - episode.sent >= repeat:
                again = Episode("firing", episode.since, episode.fired, now, value)
                transitions.append(Transition(key, again, "firing", value))
    return transitions


def iso(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds, as Alertmanager writes its times."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}Z"


def labels_of(key: Key, severity: str) -> dict[str, str]:
    """The labels of a region alert (Alertmanager's identity of an alert)."""
    status, region = key
    return {"alertname": ALERT_NAME, "region": region, "status": status, "severity": severity}


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id of a label set (16 hex digits, like Alertmanager's)."""
    blob = orjson.dumps(sorted(labels.items()))
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Message:
    """Everything a notification says, whatever its format."""

    state: str  # firing / resolved
    key: Key
    share: float
    threshold: float
    starts_at: float
    ends_at: float  # 0 while firing
    severity: str
    meters: int
    total: int


def describe(message: Message) -> str:
    """One line a person reads (the Slack/Teams text, the Alertmanager summary)."""
    status, region = message.key
    percent = f"{message.share * 100:.1f}%"
    if message.state == "firing":
        return (f"[FIRING] region {region}: {percent} of meters are {status} ({message.meters} of {message.total}; "
                f"threshold {message.threshold * 100:.1f}%)")
    return f"[RESOLVED] region {region}: {status} meters are back to {percent} ({message.meters} of {message.total})"


def alertmanager_body(message: Message, receiver: str, external_url: str) -> dict[str, Any]:
    """An Alertmanager webhook (version 4) body carrying one alert."""
    labels = labels_of(message.key, message.severity)
    annotations = {
        "summary": describe(message),
        "share": f"{message.share:.4f}",
        "threshold": f"{message.threshold:.4f}",
        "meters": str(message.meters),
        "region_meters": str(message.total),
    }
    alert = {
        "status": message.state,
        "labels": labels,
        "annotations": annotations,
        "startsAt": iso(message.starts_at),
        "endsAt": iso(message.ends_at) if message.ends_at else NEVER,
        "generatorURL": external_url,
        "fingerprint": fingerprint(labels),
    }
    group_labels = {"alertname": ALERT_NAME, "region": labels["region"], "status": labels["status"]}
    return {
        "version": "4",
        "groupKey": "{}:" + orjson.dumps(group_labels).decode(),
        "truncatedAlerts": 0,
        "status": message.state,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [alert],
    }


def slack_body(message: Message) -> dict[str, Any]:
    """A Slack (and Microsoft Teams) incoming-webhook body: ``{"text": ...}``."""
    return {"text": describe(message)}


def body(message: Message, fmt: str, receiver: str = "smartgrid", external_url: str = "") -> bytes:
    """The JSON body of a notification in ``fmt`` (``alertmanager`` or ``slack``)."""
    if fmt == "slack":
        return orjson.dumps(slack_body(message))
    return orjson.dumps(alertmanager_body(message, receiver, external_url))
