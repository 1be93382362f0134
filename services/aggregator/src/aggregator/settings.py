"""Aggregator settings: Redis, the late window, batch sizes, emission interval."""

from __future__ import annotations

import socket
import urllib.parse
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator
from smartgrid_common.settings import Duration, EventTimeSettings, RedisSettings, ServiceSettings, env


MIN_TOKEN_LENGTH = 16
"""A shorter API token could be guessed."""


def parse_region_places(text: str) -> dict[str, tuple[float, float] | str]:
    """``SMARTGRID_REGION_PLACES``: ``region-01=47.6:-122.3,region-02=Texas`` -> {region: (lat, lon)
    or a US state's name}; a ValueError says what to write."""
    places: dict[str, tuple[float, float] | str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, place = (part.strip() for part in entry.partition("="))
        if not sep or not name or not place:
            raise ValueError(f"{entry!r}: write region=lat:lon or region=state, comma-separated")
        lat, colon, lon = place.partition(":")
        if colon:
            try:
                point = (float(lat), float(lon))
            except ValueError:
                raise ValueError(f"{entry!r}: lat:lon must be two numbers, e.g. {name}=47.6:-122.3") from None
            if not (-90 <= point[0] <= 90 and -180 <= point[1] <= 180):
                raise ValueError(f"{entry!r}: latitude in [-90, 90], longitude in [-180, 180]")
            places[name] = point
        else:
            places[name] = place
    return places


class AggregatorSettings(ServiceSettings, RedisSettings, EventTimeSettings):
    """Everything ``python -m aggregator`` reads from the environment.

    ``late_window`` (from :class:`EventTimeSettings`) is also the TTL of the per-bucket
    distinct-meter sets: memory grows with it.
    """

    # Consumer group on the summaries stream (shared by every aggregator replica).
    group: str = env("SMARTGRID_AGGREGATOR_GROUP", "aggregator", min_length=1)
    # This replica's consumer name in the group; defaults to the hostname (the pod name).
    consumer: str = env("SMARTGRID_AGGREGATOR_CONSUMER", socket.gethostname(), min_length=1)
    # Summaries read per XREADGROUP call.
    batch: int = env("SMARTGRID_AGGREGATOR_BATCH", 100, gt=0)
    # Summaries folded per EVALSHA (each still checked against its own watermark).
    fold_group: int = env("SMARTGRID_AGGREGATOR_FOLD_GROUP", 20, gt=0)
    # Most meter updates in one EVALSHA (a summary with more goes alone). Each costs a few Redis
    # calls inside the script; when ingest starts on many meters every one of them is new, and
    # one script over a read of them held Redis for seconds (past lua-time-limit, 5 s, Redis
    # answers BUSY to every other client).
    fold_meters: int = env("SMARTGRID_AGGREGATOR_FOLD_METERS", 10000, gt=0)
    # Longest XREADGROUP blocks waiting for new summaries.
    block: Duration = env("SMARTGRID_AGGREGATOR_BLOCK", 0.5)
    # A pending summary idle this long (its replica presumably died) is claimed by another one.
    claim_idle: Duration = env("SMARTGRID_AGGREGATOR_CLAIM_IDLE", 30.0)
    # How long per-second totals and the per-minute trend are kept (event seconds older than the
    # newest minus this are dropped as too late).
    live_retention: Duration = env("SMARTGRID_LIVE_RETENTION", 86400.0, gt=0)
    # How long per-(second, region) rollups are kept (at least the late window).
    region_retention: Duration = env("SMARTGRID_REGION_RETENTION", 3600.0, gt=0)
    # Changed buckets are emitted to the rollups stream at most once per this interval.
    emit_interval: Duration = env("SMARTGRID_EMIT_INTERVAL", 1.0, gt=0)
    # Emit rollups for the writer (off when no writer runs: the rollups stream would only grow).
    emit_rollups: bool = env("SMARTGRID_EMIT_ROLLUPS", True)
    # Buckets (seconds) per rollup message.
    emit_chunk: int = env("SMARTGRID_EMIT_CHUNK", 200, gt=0)
    # Interval between two pushes of the dashboard's Server-Sent Events stream.
    sse_interval: Duration = env("SMARTGRID_SSE_INTERVAL", 1.0, gt=0)
    # Fold has not progressed for this long while summaries wait: /readyz turns false.
    stall_after: Duration = env("SMARTGRID_AGGREGATOR_STALL_AFTER", 60.0, gt=0)
    # Where the dashboard's map draws regions: `name=lat:lon` or `name=US state name`, comma-separated
    # (parse_region_places); it wins over the mean coordinates of the region's meters.
    region_places: str = env("SMARTGRID_REGION_PLACES", "")

    # Region alerts (docs/operations.md, "Alerts"). Interval between two reads of every region's
    # status counts: the smartgrid_region_meters gauges and the alert evaluation.
    region_status_interval: Duration = env("SMARTGRID_REGION_STATUS_INTERVAL", 5.0, gt=0)
    # Webhook the alerts are posted to (http(s)://...; from a Secret: a Slack URL holds its token).
    # Empty: no notifications (the gauges are still served).
    alert_webhook_url: SecretStr = env("SMARTGRID_ALERT_WEBHOOK_URL", SecretStr(""))
    # Body of a notification: alertmanager (webhook version 4 JSON) or slack ({"text": ...}, which
    # Microsoft Teams' incoming webhooks take too).
    alert_format: Literal["alertmanager", "slack"] = env("SMARTGRID_ALERT_FORMAT", "alertmanager")
    # Share of a region's meters in a status (0..1) at which its alert fires; 0 turns it off.
    alert_fault_share: float = env("SMARTGRID_ALERT_FAULT_SHARE", 0.2, ge=0, le=1)
    alert_offline_share: float = env("SMARTGRID_ALERT_OFFLINE_SHARE", 0.2, ge=0, le=1)
    alert_clock_skew_share: float = env("SMARTGRID_ALERT_CLOCK_SKEW_SHARE", 0.05, ge=0, le=1)
    # An alert resolves when the share falls below threshold x this (hysteresis: no flapping).
    alert_clear_ratio: float = env("SMARTGRID_ALERT_CLEAR_RATIO", 0.8, gt=0, le=1)
    # How long a share must stay at or above its threshold before the alert fires.
    alert_for: Duration = env("SMARTGRID_ALERT_FOR", 60.0)
    # A firing alert is sent again every this long; 0: once per episode.
    alert_repeat_interval: Duration = env("SMARTGRID_ALERT_REPEAT_INTERVAL", 0.0)
    # The alerts' severity label.
    alert_severity: str = env("SMARTGRID_ALERT_SEVERITY", "warning", min_length=1)
    # Link in the notifications (Alertmanager's generatorURL/externalURL): the dashboard's address.
    alert_dashboard_url: str = env("SMARTGRID_ALERT_DASHBOARD_URL", "")
    # Timeout of one webhook request.
    alert_timeout: Duration = env("SMARTGRID_ALERT_TIMEOUT", 10.0, gt=0)

    # Bearer token the dashboard's API and page require (docs/kubernetes.md, "Access"); empty: open.
    api_token: SecretStr = env("SMARTGRID_API_TOKEN", SecretStr(""))
    # A file holding that token instead (a mounted Secret); read once at start-up.
    api_token_file: str = env("SMARTGRID_API_TOKEN_FILE", "")

    @field_validator("region_places")
    @classmethod
    def _places(cls, value: str) -> str:
        parse_region_places(value)
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value().strip()
        if url:
            parsed = urllib.parse.urlsplit(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                # The value is a secret: the message says what is wrong, never what was given.
                raise ValueError("not a webhook URL: write http(s)://host[:port]/path (or leave it empty)")
        return SecretStr(url)

    @model_validator(mode="after")
    def _alerts(self) -> AggregatorSettings:
        if self.alert_webhook_url.get_secret_value() and not any(
            (self.alert_fault_share, self.alert_offline_share, self.alert_clock_skew_share)
        ):
            raise ValueError(
                "SMARTGRID_ALERT_WEBHOOK_URL is set but every SMARTGRID_ALERT_*_SHARE is 0: set a threshold "
                "(0 < share <= 1) or leave the webhook empty"
            )
        return self

    @model_validator(mode="after")
    def _token(self) -> AggregatorSettings:
        if self.api_token.get_secret_value() and self.api_token_file:
            raise ValueError("SMARTGRID_API_TOKEN and SMARTGRID_API_TOKEN_FILE are both set: set one of them")
        if self.api_token_file:
            try:
                with open(self.api_token_file, encoding="utf-8") as file:
                    token = file.read().strip()
            except OSError as error:
                raise ValueError(f"SMARTGRID_API_TOKEN_FILE {self.api_token_file!r} cannot be read ({error.strerror}): "
                                 "mount the Secret there or unset it") from None
            if not token:
                raise ValueError(f"SMARTGRID_API_TOKEN_FILE {self.api_token_file!r} is empty: put the token in it")
            self.api_token = SecretStr(token)
        token = self.api_token.get_secret_value()
        if token and (len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token)):
            raise ValueError(
                f"SMARTGRID_API_TOKEN{' (from SMARTGRID_API_TOKEN_FILE)' if self.api_token_file else ''} must be at "
                f"least {MIN_TOKEN_LENGTH} characters without spaces: make one with `openssl rand -hex 32`"
            )
        return self

    def alert_thresholds(self) -> dict[str, float]:
        """Status -> share of a region's meters at which its alert fires (only those switched on)."""
        shares = {"fault": self.alert_fault_share, "offline": self.alert_offline_share,
                  "clock_skew": self.alert_clock_skew_share}
        return {status: value for status, value in shares.items() if value > 0}
