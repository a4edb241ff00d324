"""The local Postgres adapter in one import: probe it, control it, and the values it reports.

The code lives in modules split by responsibility (postgres_probe, postgres_control,
postgres_rebuild, postgres_files, postgres_session, pg_process); this module only gathers
their public names.
"""

from pgha.adapters.postgres_control import STOP_MODES, PostgresControl
from pgha.adapters.postgres_files import PostgresPaths
from pgha.adapters.postgres_probe import PostgresProbe
from pgha.adapters.postgres_state import (
    ControlData,
    PostgresState,
    ReplicationSlot,
    StreamingReplica,
    Upstream,
    WalReceiver,
    format_lsn,
    parse_lsn,
)

__all__ = [
    "STOP_MODES",
    "ControlData",
    "PostgresControl",
    "PostgresPaths",
    "PostgresProbe",
    "PostgresState",
    "ReplicationSlot",
    "StreamingReplica",
    "Upstream",
    "WalReceiver",
    "format_lsn",
    "parse_lsn",
]
