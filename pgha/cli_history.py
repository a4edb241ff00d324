"""`pgha history`: every promotion (time, term, timeline, LSN, node, kind, write outage and
why), optionally only those of the last `--since` window, and with `--summary` the
availability over that window. Only reads; the arithmetic lives in pgha/history_summary.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pgha.adapters.store import HISTORY, Record, Unparsable
from pgha.cli_status import read_snapshot
from pgha.cli_target import EXIT_ETCD_UNREACHABLE, ClusterTarget
from pgha.history_summary import (
    FAILOVER,
    SWITCHOVER,
    UNKNOWN,
    Promotion,
    Summary,
    describe_divergence,
    divergences_of,
    iso_time,
    parse_promotions,
    select,
    summarize,
    summary_document,
)

Echo = Callable[..., Any]


def show_history(
    target: ClusterTarget,
    *,
    as_json: bool,
    since_seconds: float | None,
    summary: bool,
    echo: Echo,
    now: Callable[[], float] = time.time,
) -> int:
    """Print the promotions (of the window, with `since_seconds`) and, with `summary`, the
    availability, failovers, switchovers and write outage over it. Exit 0, or 2 without etcd."""
    snapshot = read_snapshot(target, echo)
    if snapshot is None:
        return EXIT_ETCD_UNREACHABLE
    value = snapshot.get(HISTORY)
    if isinstance(value, Unparsable):
        echo(f"the history key is unreadable ({value.error}); showing nothing", err=True)
    promotions = parse_promotions(value.data if isinstance(value, Record) else None)
    moment = now()
    if summary:
        result = summarize(promotions, moment, since_seconds)
        if as_json:
            echo(json.dumps(summary_document(result), indent=2, sort_keys=True))
            return 0
        _print_entries(target, list(result.promotions), result.start, echo)
        for line in _summary_lines(result):
            echo(line)
        return 0
    listed = promotions
    start = None
    if since_seconds is not None:
        start = moment - since_seconds
        listed = select(promotions, start, moment)
    if as_json:
        echo(json.dumps([promotion.document() for promotion in listed], indent=2, sort_keys=True))
        return 0
    _print_entries(target, listed, start, echo)
    return 0


def _print_entries(
    target: ClusterTarget, listed: list[Promotion], start: float | None, echo: Echo
) -> None:
    if not listed:
        since = f" since {iso_time(start)}" if start is not None else " yet"
        echo(f"cluster {target.cluster!r}: no promotion recorded{since}")
    for promotion in listed:
        echo(_entry_line(promotion))
        for divergence in divergences_of(promotion.entry):
            echo(f"    pg_rewind discarded {describe_divergence(divergence)}")


def _entry_line(promotion: Promotion) -> str:
    entry = promotion.entry
    outage = (
        f"{promotion.outage_seconds:.1f} s without a writable primary"
        if promotion.outage_seconds is not None
        else "outage not recorded"
    )
    return (
        f"{iso_time(promotion.at) or '?'}  term {entry.get('term')}  timeline "
        f"{entry.get('timeline')}  at {entry.get('lsn')}  {entry.get('node')} "
        f"({promotion.kind}, {outage}): {entry.get('reason')}"
    )


def _summary_lines(summary: Summary) -> list[str]:
    availability = summary.availability_percent
    if summary.start is None or availability is None:
        return ["availability: no window (no promotion recorded): give --since, e.g. --since 30d"]
    counts = f"{summary.count(FAILOVER)} failover(s), {summary.count(SWITCHOVER)} switchover(s)"
    unknown = summary.count(UNKNOWN)
    if unknown:
        counts += f", {unknown} promotion(s) of unknown kind"
    lines = [
        f"window: {iso_time(summary.start)} to {iso_time(summary.end)} "
        f"({summary.window_seconds:.0f} s)",
        f"availability: {availability:.4f} % "
        f"(write outage {summary.write_outage_seconds:.1f} s in total)",
        f"promotions: {counts}",
    ]
    if summary.without_outage:
        lines.append(
            f"note: {summary.without_outage} promotion(s) predate outage recording; "
            "their outage is not counted, so the availability may be lower"
        )
    return lines
