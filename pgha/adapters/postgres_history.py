"""Read a timeline's fork point from the timeline history files in pg_wal."""

from __future__ import annotations

from pathlib import Path

from pgha.adapters.postgres_state import parse_lsn


def timeline_fork_point(data_dir: Path, timeline: int) -> int | None:
    """Where `timeline` branched off its parent: the last switch point in its history file.

    None for timeline 1 (it has no parent) or when the file cannot be read.
    """
    if timeline <= 1:
        return None
    path = data_dir / "pg_wal" / f"{timeline:08X}.history"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit():
            try:
                return parse_lsn(fields[1])
            except ValueError:
                return None
    return None
