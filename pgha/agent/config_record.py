"""The `config` key: the cluster's dynamic configuration as a Policy (and the pause flag).

An unreadable or unsafe config is reported and the last good one kept, the pause included:
garbage must not end an operator's maintenance window or loosen the timers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from pgha.adapters.store import Value
from pgha.agent.record_fields import BadRecord, field_of, object_of
from pgha.core.model import Policy
from pgha.dynamic_config import SYNCHRONOUS_MODES
from pgha.settings import check_timers

DYNAMIC_KEYS: Mapping[str, str] = {
    "ttl": "ttl_seconds",
    "loop_wait": "loop_wait_seconds",
    "retry_timeout": "retry_timeout_seconds",
    "safety_margin": "safety_margin_seconds",
    "primary_start_timeout": "primary_start_timeout_seconds",
    "primary_unhealthy_timeout": "primary_unhealthy_timeout_seconds",
    "maximum_lag_on_failover": "maximum_lag_on_failover_bytes",
    "maximum_lag_seconds_on_failover": "maximum_lag_seconds_on_failover",
    "remove_data_directory_on_rewind_failure": "remove_data_directory_on_rewind_failure",
    "synchronous_node_count": "synchronous_node_count",
    "member_slots_ttl": "member_slots_ttl_seconds",
}


def parse_config(
    value: Value | None, last_policy: Policy, last_paused: bool, problems: list[str]
) -> tuple[Policy, bool]:
    try:
        data = object_of(value)
        if data is None:
            return last_policy, False
        changes = {}
        for key, attribute in DYNAMIC_KEYS.items():
            if key in data:
                kind = bool if attribute.startswith("remove_") else (int, float)
                changes[attribute] = field_of(data, key, kind, None)
        paused = field_of(data, "paused", bool, False)
        mode = field_of(data, "synchronous_mode", str, "off")
        if mode not in SYNCHRONOUS_MODES:
            raise BadRecord(f"synchronous_mode must be off, on or strict, got {mode[:20]!r}")
        changes["synchronous_mode"] = mode
        count = changes.get("synchronous_node_count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise BadRecord("synchronous_node_count must be a whole number, 1 or more")
        policy = replace(last_policy, **changes)
        if (
            policy.primary_start_timeout_seconds < 0
            or policy.maximum_lag_on_failover_bytes < 0
            or not 0 <= policy.maximum_lag_seconds_on_failover < math.inf
        ):
            raise BadRecord(
                "primary_start_timeout, maximum_lag_on_failover and "
                "maximum_lag_seconds_on_failover must not be negative"
            )
        if not 0 < policy.primary_unhealthy_timeout_seconds < math.inf:  # refuses NaN too
            raise BadRecord("primary_unhealthy_timeout must be a positive number of seconds")
        if not 0 <= policy.member_slots_ttl_seconds < math.inf:
            raise BadRecord("member_slots_ttl must be a number of seconds, 0 or more")
        try:
            check_timers(
                policy.ttl_seconds,
                policy.loop_wait_seconds,
                policy.retry_timeout_seconds,
                policy.safety_margin_seconds,
            )
        except ValueError as exc:
            raise BadRecord(str(exc)) from None
        return policy, bool(paused)
    except BadRecord as exc:
        # Keep the pause too: garbage must not end an operator's maintenance window.
        problems.append(f"dynamic config ignored, keeping the last good one: {exc}")
        return last_policy, last_paused
