"""The cluster-wide dynamic configuration in the `config` key: what may be set, and checks.

The agents read it every cycle (pgha/agent/cluster_view.py); the CLI edits it. A value is
validated before it is written, the timers together (a leader must always be able to fence
itself before its lease expires), so an operator cannot write a config that would make
the cluster unsafe; the agents also refuse an unsafe one they find (keeping the last good).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from pgha.settings import check_timers


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:  # float() reads "nan" and "inf" too
        raise ValueError("must be a positive number of seconds")
    return value


def _seconds_or_off(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be a number of seconds, 0 (off) or more")
    return value


def _bytes(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be a number of bytes, 0 or more")
    return value


SYNCHRONOUS_MODES = ("off", "on", "strict")


def _synchronous_mode(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in SYNCHRONOUS_MODES:
        raise ValueError("must be off, on or strict")
    return lowered


def _node_count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "on", "yes", "1"):
        return True
    if lowered in ("false", "off", "no", "0"):
        return False
    raise ValueError("must be true or false")


KEYS: Mapping[str, tuple[Callable[[str], Any], str]] = {
    "ttl": (_seconds, "seconds the leader lease lives without renewal"),
    "loop_wait": (_seconds, "seconds between two HA cycles"),
    "retry_timeout": (_seconds, "seconds an etcd or Postgres call may take"),
    "safety_margin": (_seconds, "seconds before lease expiry by which a leader fences"),
    "primary_start_timeout": (_seconds, "seconds a crashed primary may take to restart"),
    "primary_unhealthy_timeout": (
        _seconds,
        "seconds a running primary may fail to commit before it is killed and failed over",
    ),
    "maximum_lag_on_failover": (_bytes, "bytes a replica may lag and still be promoted"),
    "maximum_lag_seconds_on_failover": (
        _seconds_or_off,
        "seconds of primary heartbeats a replica may lack and still be promoted; 0 = off",
    ),
    "remove_data_directory_on_rewind_failure": (
        _boolean,
        "re-clone (moving the old data aside) when pg_rewind fails",
    ),
    "paused": (_boolean, "maintenance mode: the agents change nothing"),
    "synchronous_mode": (
        _synchronous_mode,
        "off; on: commits wait for a sync standby, async when none is left; strict: they block",
    ),
    "synchronous_node_count": (_node_count, "how many sync standbys commits wait for"),
    "member_slots_ttl": (_seconds, "seconds the slots of a departed member are kept"),
}
TIMERS = ("ttl", "loop_wait", "retry_timeout", "safety_margin")


def parse_assignment(text: str) -> tuple[str, Any]:
    """'ttl=20' -> ('ttl', 20.0); ValueError naming the key and what it expects."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        raise ValueError(f"{text!r}: expected KEY=VALUE, like ttl=20")
    if key not in KEYS:
        raise ValueError(f"unknown key {key!r}; known keys: {', '.join(sorted(KEYS))}")
    convert, meaning = KEYS[key]
    try:
        return key, convert(raw.strip())
    except ValueError as exc:
        detail = str(exc) if "must" in str(exc) else "not a valid value"
        raise ValueError(f"{key}={raw.strip()!r}: {detail} ({meaning})") from None


def validate(config: Mapping[str, Any]) -> None:
    """The whole config as it would be written; ValueError if the timers are unsafe."""
    if all(name in config for name in TIMERS):
        check_timers(*(float(config[name]) for name in TIMERS))


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    lines = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            lines.append(f"{key}: {before.get(key)!r} -> {after.get(key)!r}")
    return lines
