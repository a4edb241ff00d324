"""What a `history` entry means: the kind of promotion and its write outage, and the
availability summary `pgha history --summary` prints over a window of time.

The agent that promotes writes the entry (pgha/agent/execute.py, AppendHistory); the CLI
reads it. Pure: no I/O and no clock (`now` is an argument), so the arithmetic is tested by
tables and properties alone.

An entry is {"term", "timeline", "lsn", "node", "at", "reason"} and, since kinds were
recorded, also {"code", "kind", "writes_stopped_at", "write_outage_seconds"}. "at" is when
the new primary became writable (wall clock, epoch seconds). Older entries carry no kind:
it is inferred from the reason, which the decision core words the same way for every
promotion of a kind; their outage is unknown and counted apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FAILOVER = "failover"
SWITCHOVER = "switchover"
UNKNOWN = "unknown"
KINDS = (FAILOVER, SWITCHOVER, UNKNOWN)

KIND_OF_CODE: Mapping[str, str] = {
    "take_over_expired_leader": FAILOVER,
    "take_over_on_request": FAILOVER,
    "take_over_after_handoff": SWITCHOVER,
}
"""The decision codes that promote a node after taking a free key. A handoff is a planned
handover (`pgha switchover`, or a clean stop of the leader), everything else a failover.
`promote_held_key` (a retried promotion) cannot tell which: it stays unknown."""

_REASON_MARKS = (
    ("handed the key over at", SWITCHOVER),
    ("released the key at", SWITCHOVER),
    ("best eligible candidate", FAILOVER),
    ("asked this node to take over", FAILOVER),
)
"""Phrases of pgha/core/election.py's reasons, for entries written before the kind was."""

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
DURATION_FORMS = "30d, 12h, 90m, 45s, or combinations in that order like 1d12h"


# --- writing an entry (the agent) ----------------------------------------------------------


def promotion_fields(
    code: str, at: float, no_leader_for_seconds: float | None, ttl_seconds: float | None
) -> dict[str, Any]:
    """The kind and outage fields of the entry a promotion by decision `code` writes at `at`.

    `no_leader_for_seconds`: how long this node had seen no leader key when it became
    writable (None: it saw one, e.g. a retried promotion). Writes stopped:
    - after a handoff, when the old leader released the key: it had just shut down cleanly,
      so only its shutdown checkpoint (a fraction of a second) goes uncounted;
    - after a lost lease, up to one ttl before the key vanished (the old leader's last
      renewal). An upper bound: a leader cut off from etcd writes until its fencing deadline,
      safety_margin before expiry; a crashed host stops at once. Availability is therefore
      never overstated.
    """
    kind = KIND_OF_CODE.get(code, UNKNOWN)
    fields: dict[str, Any] = {"code": code, "kind": kind}
    if no_leader_for_seconds is None or kind == UNKNOWN:
        return fields
    outage = max(0.0, no_leader_for_seconds)
    if kind == FAILOVER and ttl_seconds is not None:
        outage += ttl_seconds
    fields["writes_stopped_at"] = round(at - outage, 3)
    fields["write_outage_seconds"] = round(outage, 3)
    return fields


# --- reading entries (the CLI) -------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    """One history entry as the summary sees it."""

    at: float | None
    """When the new primary became writable (epoch seconds); None if the entry has no time."""
    kind: str
    outage_seconds: float | None
    """How long the cluster had no writable primary before `at`; None when not recorded."""
    entry: Mapping[str, Any]
    """The entry as stored."""

    def document(self) -> dict[str, Any]:
        """The stored entry with its kind filled in (inferred for old entries)."""
        return {**self.entry, "kind": self.kind}


def kind_of(entry: Mapping[str, Any]) -> str:
    """The recorded kind, or the one the reason shows, or "unknown"."""
    kind = entry.get("kind")
    if kind in KINDS:
        return str(kind)
    reason = entry.get("reason")
    if isinstance(reason, str):
        for mark, marked in _REASON_MARKS:
            if mark in reason:
                return marked
    return UNKNOWN


def parse_promotions(data: Any) -> list[Promotion]:
    """The history key's value as promotions, oldest first; what is not an entry is skipped."""
    if not isinstance(data, list):
        return []
    return [
        Promotion(_number(entry.get("at")), kind_of(entry), _outage(entry), entry)
        for entry in data
        if isinstance(entry, dict)
    ]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _outage(entry: Mapping[str, Any]) -> float | None:
    seconds = _number(entry.get("write_outage_seconds"))
    return seconds if seconds is not None and seconds >= 0 else None


def parse_duration(text: str) -> float:
    """'1d12h' -> 129600.0; ValueError naming the accepted forms."""
    cleaned = text.strip().lower()
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None:
        raise ValueError(f"{text!r} is not a duration; use {DURATION_FORMS}")
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    total = float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
    if total <= 0:
        raise ValueError(f"{text!r} is an empty window; use {DURATION_FORMS}")
    return total


# --- the summary ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    start: float | None
    """Where the window begins (epoch seconds); None without --since and without entries."""
    end: float
    promotions: tuple[Promotion, ...]
    """The promotions that became writable inside the window, oldest first."""
    write_outage_seconds: float
    """The time inside the window without a writable primary, overlaps counted once."""

    @property
    def window_seconds(self) -> float:
        return self.end - self.start if self.start is not None else 0.0

    @property
    def availability_percent(self) -> float | None:
        """1 - outage / window, in percent; None for an empty window."""
        if self.window_seconds <= 0:
            return None
        return max(0.0, 100.0 * (1 - self.write_outage_seconds / self.window_seconds))

    def count(self, kind: str) -> int:
        return sum(1 for promotion in self.promotions if promotion.kind == kind)

    @property
    def without_outage(self) -> int:
        """Promotions whose outage was not recorded (written before it was): not counted."""
        return sum(1 for promotion in self.promotions if promotion.outage_seconds is None)


def select(promotions: Iterable[Promotion], start: float, end: float) -> list[Promotion]:
    """The promotions that became writable in [start, end]; entries without a time are out."""
    return [p for p in promotions if p.at is not None and start <= p.at <= end]


def summarize(promotions: list[Promotion], now: float, since_seconds: float | None) -> Summary:
    """The summary over [now - since, now], or without `since_seconds` from the start of the
    first promotion's outage (the first thing history knows about) to now."""
    timed = [p for p in promotions if p.at is not None]
    if since_seconds is not None:
        start: float | None = now - since_seconds
    elif timed:
        start = min(_outage_interval(p)[0] for p in timed)
    else:
        start = None
    if start is None:
        return Summary(None, now, (), 0.0)
    inside = select(timed, start, now)
    # An outage may begin before the window and end inside it: only its part inside counts.
    intervals = [_outage_interval(p) for p in timed if p.outage_seconds is not None]
    return Summary(start, now, tuple(inside), _covered(intervals, start, now))


def _outage_interval(promotion: Promotion) -> tuple[float, float]:
    assert promotion.at is not None
    return promotion.at - (promotion.outage_seconds or 0.0), promotion.at


def _covered(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """The length of the union of `intervals` within [start, end]."""
    total, reached = 0.0, start
    for low, high in sorted(intervals):
        begin, finish = max(low, reached), min(high, end)
        if finish > begin:
            total += finish - begin
            reached = finish
    return total


def iso_time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def summary_document(summary: Summary) -> dict[str, Any]:
    """What `pgha history --summary --json` prints: the window's bounds as ISO 8601 times."""
    availability = summary.availability_percent
    return {
        "since": iso_time(summary.start),
        "until": iso_time(summary.end),
        "window_seconds": round(summary.window_seconds, 3),
        "availability_percent": round(availability, 6) if availability is not None else None,
        "failovers": summary.count(FAILOVER),
        "switchovers": summary.count(SWITCHOVER),
        "unknown_promotions": summary.count(UNKNOWN),
        "write_outage_seconds": round(summary.write_outage_seconds, 3),
        "promotions_without_outage": summary.without_outage,
        "entries": [promotion.document() for promotion in summary.promotions],
    }


DIVERGED = "diverged"
"""The key of a rewind's discarded WAL range in a member record, and of the list of them in
the history entry of the promotion that began the next timeline (agent/divergence.py)."""


def describe_divergence(divergence: Mapping[str, Any]) -> str:
    """One line for the log, `pgha history` and `pgha status`."""
    end = divergence.get("to_at_least")
    up_to = f" up to at least {end}" if end else ""
    return (
        f"{divergence.get('node')}'s WAL on timeline {divergence.get('timeline')} from "
        f"{divergence.get('from')}{up_to} (rewound from {divergence.get('source')})"
    )


def divergences_of(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The discarded WAL ranges recorded in a history entry (none in older entries)."""
    listed = entry.get(DIVERGED)
    if not isinstance(listed, list):
        return []
    return [item for item in listed if isinstance(item, Mapping)]
