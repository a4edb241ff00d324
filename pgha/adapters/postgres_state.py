"""Values the Postgres adapter reports: what one probe saw, and where a replica streams from.

Plain frozen dataclasses and two LSN helpers; no I/O, so the agent can pass them to the
pure core as they are. LSNs are ints (bytes since the start of WAL); Postgres's own
'X/Y' text form only appears at the SQL boundary and in messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def parse_lsn(text: str) -> int:
    """'16/B374D848' -> 0x16B374D848; raises ValueError on anything else."""
    high, sep, low = text.strip().partition("/")
    if not sep or not high or not low:
        raise ValueError(f"expected an LSN like 0/3000028, got {text!r}")
    try:
        high_value, low_value = int(high, 16), int(low, 16)
    except ValueError:
        raise ValueError(f"expected an LSN like 0/3000028, got {text!r}") from None
    if not (0 <= high_value <= 0xFFFFFFFF and 0 <= low_value <= 0xFFFFFFFF):
        raise ValueError(f"LSN out of range: {text!r}")
    return (high_value << 32) | low_value


def format_lsn(lsn: int) -> str:
    """0x16B374D848 -> '16/B374D848', the form Postgres prints and accepts."""
    if not 0 <= lsn <= 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"LSN out of range: {lsn}")
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class Upstream:
    """A Postgres server to stream WAL from (or clone / rewind from), and the slot to use."""

    host: str
    port: int
    slot: str | None = None

    def __str__(self) -> str:
        slot = f" (slot {self.slot})" if self.slot else ""
        return f"{self.host}:{self.port}{slot}"


@dataclass(frozen=True)
class WalReceiver:
    """One row of pg_stat_wal_receiver: the upstream a replica is connected to right now."""

    status: str
    sender_host: str | None
    sender_port: int | None
    slot_name: str | None
    received_timeline: int | None
    flushed_lsn: int | None


@dataclass(frozen=True)
class StreamingReplica:
    """One row of pg_stat_replication on the upstream: a replica (or a base backup) it feeds."""

    application_name: str
    client_addr: str | None
    state: str
    sync_state: str
    sent_lsn: int | None
    write_lsn: int | None
    flush_lsn: int | None
    replay_lsn: int | None


@dataclass(frozen=True)
class ReplicationSlot:
    name: str
    active: bool
    restart_lsn: int | None
    wal_status: str | None = None
    """reserved, extended, unreserved or lost (max_slot_wal_keep_size exceeded)."""


@dataclass(frozen=True)
class ControlData:
    """What pg_controldata reads from global/pg_control; available with the server down.

    For a cleanly stopped primary `checkpoint_lsn` is its shutdown checkpoint: every byte a
    replica needs to take over without losing anything (DESIGN section 4, switchover).
    """

    system_identifier: int
    cluster_state: str
    checkpoint_lsn: int
    checkpoint_timeline: int
    min_recovery_end_lsn: int
    min_recovery_end_timeline: int
    wal_segment_bytes: int = 16 * 1024 * 1024
    data_checksums: bool = False
    wal_log_hints: bool = False
    """pg_rewind needs one of these two: hint-bit changes must reach the WAL."""

    @property
    def shut_down_cleanly(self) -> bool:
        return self.cluster_state in ("shut down", "shut down in recovery")

    @property
    def was_standby(self) -> bool:
        """The last run of this data directory was recovery (a standby), not a primary."""
        return self.cluster_state in ("shut down in recovery", "in archive recovery")


@dataclass(frozen=True)
class PostgresState:
    """Everything one probe of the local Postgres saw.

    `running` comes from postmaster.pid and /proc alone; every SQL-derived field is None
    when `accepting_connections` is False, and `problem` then says why (refused, timed out,
    starting up). `control` is filled only when the server is not running.
    """

    data_dir: Path
    initialized: bool
    running: bool
    postmaster_pid: int | None = None
    postmaster_status: str | None = None
    accepting_connections: bool = False
    problem: str | None = None
    server_version: int | None = None
    system_identifier: int | None = None
    in_recovery: bool | None = None
    timeline: int | None = None
    checkpoint_timeline: int | None = None
    wal_lsn: int | None = None
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    wal_receiver: WalReceiver | None = None
    configured_upstream: Upstream | None = None
    replicas: tuple[StreamingReplica, ...] = ()
    pending_restart: tuple[str, ...] = ()
    last_replay_age_seconds: float | None = None
    """A replica's seconds since the commit time of the last transaction it replayed."""
    synchronous_standby_names: str | None = None
    flush_lsn: int | None = None
    """A primary's WAL flushed locally (the baseline a new sync standby must reach)."""
    heartbeat_at: float | None = None
    """The stamp (primary's wall clock, epoch seconds) of the newest pgha heartbeat row
    this server has: written here on a primary, replayed on a replica; None without one."""
    control: ControlData | None = None

    @property
    def is_primary(self) -> bool:
        """Read-write right now: accepting connections and not in recovery."""
        return self.accepting_connections and self.in_recovery is False

    @property
    def position(self) -> int | None:
        """How far this node's WAL goes: the write position of a primary; for a replica
        the furthest of received and replayed (traps 9)."""
        if self.in_recovery is False:
            return self.wal_lsn
        known = [lsn for lsn in (self.receive_lsn, self.replay_lsn) if lsn is not None]
        return max(known) if known else None

    @property
    def replay_lag_seconds(self) -> float | None:
        """How far a replica's replay is behind in time: 0 once it has replayed all it
        received (an idle primary commits nothing, so the last commit only grows older);
        otherwise the age of the last replayed commit. None for a primary or when unknown."""
        if self.in_recovery is not True:
            return None
        received, replayed = self.receive_lsn, self.replay_lsn
        if received is not None and replayed is not None and replayed >= received:
            return 0.0
        if self.last_replay_age_seconds is None:
            return None
        return max(self.last_replay_age_seconds, 0.0)

    @property
    def checkpointed_since_promotion(self) -> bool:
        """A primary whose last checkpoint is on its current timeline: safe to rewind
        against (traps 10a). False for a replica or when unknown."""
        return (
            self.is_primary
            and self.timeline is not None
            and self.checkpoint_timeline == self.timeline
        )
