"""The Redis key layout of the live state (one place; the Lua scripts build the same names).

Every key starts with the pipeline prefix ``P`` (SMARTGRID_REDIS_PREFIX). See README.md for the
whole table with types and lifetimes.
"""

from __future__ import annotations

from smartgrid_common.contracts import rollup_dirty_keys, rollup_seq_keys, rollup_status_seq_key


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.watermarks = f"{prefix}:agg:wm"
        self.latest = f"{prefix}:agg:latest"
        self.dirty, self.dirty_status = rollup_dirty_keys(prefix)
        self.seq = f"{prefix}:agg:seq"
        self.status_seq = rollup_status_seq_key(prefix)
        self.stats = f"{prefix}:agg:stats"
        self.emit_lock = f"{prefix}:agg:emit_lock"
        self.status = f"{prefix}:status"
        self.meter_status = f"{prefix}:meter_status"
        self.region_meters = f"{prefix}:region_meters"
        self.geo = f"{prefix}:geo"
        self.alerts = f"{prefix}:alerts"
        # Region alerts (notifier.py): the replica that sends them, their episodes, the
        # notifications not yet delivered (oldest first).
        self.alert_leader = f"{prefix}:agg:alert_leader"
        self.alert_episodes = f"{prefix}:agg:alert_episodes"
        self.alert_outbox = f"{prefix}:agg:alert_outbox"

    def second(self, second: int) -> str:
        """Hash sum/count/min/max (+emit_seq) of one event second, all regions."""
        return rollup_seq_keys(self.prefix, second)[0]

    def minute(self, minute: int) -> str:
        """Hash sum/count/min/max of one event minute (``minute`` = its first second)."""
        return f"{self.prefix}:min:{minute}"

    @property
    def second_prefix(self) -> str:
        """What :meth:`second` puts before the second (for scripts that build the keys)."""
        return self.second(0).removesuffix("0")

    @property
    def minute_prefix(self) -> str:
        """What :meth:`minute` puts before the minute (for scripts that build the keys)."""
        return self.minute(0).removesuffix("0")

    def region_second(self, second: int) -> str:
        """Hash ``<kind>:<region>`` -> value for every region of one second (+emit_seq)."""
        return rollup_seq_keys(self.prefix, second)[1]

    def region_meters_set(self, second: int, region: str) -> str:
        """Set of distinct meter ids of one (second, region); lives for the late window."""
        return f"{self.prefix}:rmet:{second}:{region}"

    def alerts_index(self, status: str | None = None, region: str | None = None) -> str:
        """Sorted set (score = since, ms) of the non-ok meters, optionally by status/region."""
        if status is not None and region is not None:
            # The length prefix keeps ("a:b", "c") and ("a", "b:c") apart.
            return f"{self.prefix}:alerts:sr:{len(status)}:{status}:{region}"
        if status is not None:
            return f"{self.prefix}:alerts:s:{status}"
        if region is not None:
            return f"{self.prefix}:alerts:r:{region}"
        return f"{self.prefix}:alerts:all"
