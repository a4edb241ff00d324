"""What the last finished cycle saw and decided, kept for the agent's HTTP API.

The cycle replaces the whole record at its end, in one assignment, so the API's threads
always read one consistent cycle without a lock. Times are CLOCK_BOOTTIME seconds, like the
fencing deadline they are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgha.adapters.postgres_state import PostgresState
from pgha.core.decision import Decision


@dataclass(frozen=True)
class CycleRecord:
    started_at: float
    finished_at: float
    state: PostgresState
    """The local Postgres as probed at the end of the cycle, after its actions ran."""
    claim_term: int | None
    """The term this node held the key in when `state` was probed (None: not leader)."""
    decision: Decision

    @property
    def duration_seconds(self) -> float:
        return self.finished_at - self.started_at
