"""Settings base shared by every service.

The original system's variable names (``KAFKA_BROKERS``, ``INFLUXDB_URL``, ...) keep their names and
meaning; settings the product added carry the ``SMARTGRID_`` prefix. Durations are written like
``500ms``, ``1s``, ``2m``. A bad value stops start-up with a message that names the variable and
what to set it to.
"""

from __future__ import annotations

import re
import sys
import urllib.parse
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Return seconds for ``500ms``, ``1s``, ``2m``, ``1h`` or a bare number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration: write it like 500ms, 1s, 2m or 1h")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A duration in seconds, read from ``500ms`` / ``1s`` / ``2m`` / ``1h`` or a number of seconds."""


def redact_url(url: str) -> str:
    """``url`` without its userinfo (``http://user:secret@node:8086`` -> ``http://node:8086``).

    Only what follows the scheme's ``//`` up to the first ``@`` before the host is dropped; a URL
    without userinfo is returned as it is. For logs, errors and /readyz, which must never show a
    password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def redact_urls(text: str) -> str:
    """``text`` with the userinfo of every URL in it removed (see :func:`redact_url`)."""
    return re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s,]*@", r"\1", text)


def parse_influx_urls(value: str) -> list[tuple[str, tuple[str, str] | None]]:
    """The data-node URLs of ``INFLUXDB_URL`` (comma-separated), each as (URL without userinfo,
    (user, password) from its userinfo or None). Raises ValueError saying what to write."""
    nodes = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        parsed = urllib.parse.urlsplit(item)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"{redact_url(item)!r} is not an InfluxDB URL: write http(s)://host:port, several separated by commas"
            )
        try:
            parsed.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError(f"{redact_url(item)!r} has a port that is not a number") from None
        auth = None
        if parsed.username is not None:
            auth = (urllib.parse.unquote(parsed.username), urllib.parse.unquote(parsed.password or ""))
        nodes.append((redact_url(item).rstrip("/"), auth))
    if not nodes:
        raise ValueError("no InfluxDB URL given: write http(s)://host:port, several separated by commas")
    return nodes


def env(name: str, default: Any = ..., **kwargs: Any) -> Any:
    """A settings field read from exactly the environment variable ``name``."""
    return Field(default, validation_alias=name, **kwargs)


class ServiceSettings(BaseSettings):
    """Settings every service has: logging, its HTTP port."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False, case_sensitive=True)

    # Log level of the JSON logs (DEBUG, INFO, WARNING, ERROR).
    log_level: str = env("SMARTGRID_LOG_LEVEL", "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    # Port of the service's API (the dashboard), and of /healthz, /readyz and /metrics unless
    # SMARTGRID_METRICS_PORT moves them to a port of their own.
    http_port: int = env("SMARTGRID_HTTP_PORT", 8080, ge=0, le=65535)
    # Address the HTTP endpoints bind to.
    http_host: str = env("SMARTGRID_HTTP_HOST", "0.0.0.0")
    # Port of /healthz, /readyz and /metrics when they must not share the HTTP port (the chart sets
    # 9102: a NetworkPolicy opens it to Prometheus alone); unset: they answer on the HTTP port.
    metrics_port: int | None = env("SMARTGRID_METRICS_PORT", None, ge=0, le=65535)


class InfluxSettings(BaseSettings):
    """How to reach and write to InfluxDB 1.x."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    # InfluxDB 1.x base URL, e.g. http://influxdb:8086; the data nodes of a cluster comma-separated
    # (writes are spread over them, a failing node is skipped for a while). Userinfo
    # (http://user:password@host) is accepted as credentials and never logged.
    influxdb_url: str = env("INFLUXDB_URL", "http://127.0.0.1:8086", min_length=1)
    # Database that holds raw and aggregated data.
    influxdb_database: str = env("INFLUXDB_DATABASE", "smart_grid_monitoring", min_length=1)
    # Retention policy of the raw points (created at start-up, 30d, default).
    influxdb_retention_policy: str = env("INFLUXDB_RETENTION_POLICY", "raw_data", min_length=1)
    # Retention policy of the aggregates (created at start-up, 365d).
    influxdb_aggregate_retention_policy: str = env(
        "SMARTGRID_INFLUXDB_AGGREGATE_RETENTION_POLICY", "aggregated_data", min_length=1
    )
    # Points per write request.
    influxdb_batch_size: int = env("INFLUXDB_BATCH_SIZE", 10000, gt=0)
    # Longest a partly filled write batch waits before it is sent.
    influxdb_batch_timeout: Duration = env("INFLUXDB_BATCH_TIMEOUT", 1.0)
    # Retries of a failed write before the service reports not-ready (it keeps retrying after).
    influxdb_max_retries: int = env("INFLUXDB_MAX_RETRIES", 5, ge=0)
    # First retry delay; doubles on every retry up to 30s.
    influxdb_retry_interval: Duration = env("INFLUXDB_RETRY_INTERVAL", 1.0)
    # InfluxDB user (empty: no authentication).
    influxdb_username: str = env("SMARTGRID_INFLUXDB_USERNAME", "")
    # InfluxDB password (from a Secret; never logged).
    influxdb_password: SecretStr = env("SMARTGRID_INFLUXDB_PASSWORD", SecretStr(""))
    # Gzip request bodies: less network, but InfluxDB spends CPU inflating them (on loopback
    # uncompressed writes measured 78k vs 57k points/s), so it is off unless the network is the limit.
    influxdb_gzip: bool = env("SMARTGRID_INFLUXDB_GZIP", False)
    # Timeout of one HTTP request to InfluxDB.
    influxdb_timeout: Duration = env("SMARTGRID_INFLUXDB_TIMEOUT", 30.0)
    # Write consistency asked of an InfluxDB cluster (Enterprise, InfluxDB Cluster): how many
    # replicas must acknowledge a write (any, one, quorum, all). A single node ignores it.
    influxdb_consistency: Literal["any", "one", "quorum", "all"] = env("SMARTGRID_INFLUXDB_CONSISTENCY", "one")
    # Replication factor of the database and retention policies the services create (cluster).
    influxdb_replication: int = env("SMARTGRID_INFLUXDB_REPLICATION", 1, ge=1)

    @field_validator("influxdb_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        parse_influx_urls(value)
        return value


class RedisSettings(BaseSettings):
    """How to reach Redis (live state and the streams between services)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    # Redis URL, e.g. redis://redis:6379/0.
    redis_url: str = env("SMARTGRID_REDIS_URL", "redis://127.0.0.1:6379/0", min_length=1)
    # Redis password (from a Secret; never logged).
    redis_password: SecretStr = env("SMARTGRID_REDIS_PASSWORD", SecretStr(""))
    # Prefix of every Redis key the product uses (lets several pipelines share one Redis).
    redis_prefix: str = env("SMARTGRID_REDIS_PREFIX", "smartgrid", min_length=1)
    # Backstop length of each stream (XADD MAXLEN ~): entries are trimmed once every consumer group
    # acknowledged them; this bounds a stream that no consumer reads (about 2 h of summaries from
    # 32 partitions at the default interval).
    stream_max_entries: int = env("SMARTGRID_STREAM_MAX_ENTRIES", 1_000_000, gt=0)


class EventTimeSettings(BaseSettings):
    """How far event time (the meters' clocks) is trusted; ingest and the aggregator share it."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    # Readings stamped further ahead of the ingest's wall clock are dead-lettered (their meter
    # shows as clock_skew); no watermark, newest second or dashboard "now" runs further ahead.
    max_clock_skew: Duration = env("SMARTGRID_MAX_CLOCK_SKEW", 300.0)
    # How late a reading may be (behind its partition's newest event time) and still count in the
    # live buckets; an older one goes to the raw store only and flags its meter clock_skew.
    late_window: Duration = env("SMARTGRID_LATE_WINDOW", 300.0, gt=0)


S = TypeVar("S", bound=BaseSettings)

_HINTS = {
    "missing": "it is required",
    "int_parsing": "set it to a whole number",
    "float_parsing": "set it to a number",
    "bool_parsing": "set it to true or false",
}


class ConfigError(SystemExit):
    """Start-up configuration is invalid; the message says which variable and what to set."""


def describe_errors(error: ValidationError) -> str:
    """Turn a pydantic ValidationError into lines naming each environment variable."""
    lines = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]) or "configuration"
        hint = _HINTS.get(item["type"], "")
        given = item.get("input")
        # Only a single field's own value is shown, never a secret's, never the whole input.
        secret = any(word in name for word in ("PASSWORD", "SECRET", "TOKEN", "WEBHOOK"))
        shown = "" if given is None or secret or isinstance(given, dict) or not item["loc"] else f" (got {given!r})"
        shown = redact_urls(shown)  # a URL's userinfo is a password too
        message = redact_urls(item["msg"].removeprefix("Value error, "))
        lines.append(f"{name} is invalid{shown}: {message}" + (f"; {hint}" if hint else ""))
    return "\n".join(lines)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment or stop with a message that says what to set."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        message = "invalid configuration:\n" + describe_errors(error)
        print(message, file=sys.stderr)
        raise ConfigError(message) from None
