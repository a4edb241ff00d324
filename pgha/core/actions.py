"""The closed set of actions a decision may ask for, and what each one means.

The executor runs a decision's actions in order and stops at the first one that fails,
so a plan reads as a sentence: "acquire the key, then promote". Actions that make or
keep Postgres writable answer `makes_writable()` with True: just before running one, the
executor reads the clock again and refuses it when the fencing deadline is too close
(traps 2), because a plan can go stale between decide and act.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pgha.core.model import Lsn, format_lsn

StopMode = Literal["fast", "immediate"]


@dataclass(frozen=True)
class Action:
    def makes_writable(self) -> bool:
        """True for actions that make or keep Postgres writable (re-checked against the clock)."""
        return False

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class AcquireLeader(Action):
    """Create the leader key on our lease, only if nobody holds it (a lost race fails)."""


@dataclass(frozen=True)
class RenewLeader(Action):
    """Keep our lease alive and confirm the key is still ours; moves the fencing deadline."""


@dataclass(frozen=True)
class RebindLeader(Action):
    """Bind a leader key holding our name (left by our previous process) to our lease.

    Like a renewal, it sets the fencing deadline rather than needing one: a new process has
    none yet. Its compare on the key's revision fails if the key changed or the previous
    process's lease expired meanwhile, so a stale plan cannot rebind."""


@dataclass(frozen=True)
class ReleaseLeader(Action):
    """Delete the key with a compare on our term; publish `final_lsn` as a handoff.

    Only ever planned after a StopPostgres in the same plan, or with Postgres known
    stopped: the key is released only after a confirmed stop (DESIGN rule 7).
    """

    final_lsn: Lsn | None = None
    to_node: str | None = None
    after_clean_stop: bool = False
    """Take `final_lsn` from the shutdown checkpoint of the stop just before (switchover);
    refuse to release if Postgres did not shut down cleanly."""
    never_promoted: bool = False
    """The key was taken but Postgres never left recovery in this term (a failed
    pre_promote hook): a running read-only replica is as safe as a stopped server."""

    def describe(self) -> str:
        target = f" to {self.to_node}" if self.to_node else ""
        if self.after_clean_stop:
            return f"ReleaseLeader(handoff{target} at the shutdown checkpoint)"
        if self.final_lsn is None:
            return "ReleaseLeader"
        return f"ReleaseLeader(handoff{target} at {format_lsn(self.final_lsn)})"


@dataclass(frozen=True)
class UpdateSwitchover(Action):
    """Advance the `switchover` key (as leader, only if nobody changed it since the
    snapshot): the CLI prints each state as it happens, and a cancel wins the race."""

    state: str
    candidate: str | None = None
    reason: str = ""

    def describe(self) -> str:
        target = f" to {self.candidate}" if self.candidate else ""
        return f"UpdateSwitchover({self.state}{target})"


@dataclass(frozen=True)
class ForgetLeadership(Action):
    """Drop what the agent remembers about holding the key (it lost it)."""


@dataclass(frozen=True)
class ClaimInitialize(Action):
    """Create `initialize` = bootstrapping and the leader key together, on our lease."""


@dataclass(frozen=True)
class InitDb(Action):
    """Run initdb into the empty data directory."""


@dataclass(frozen=True)
class FinishInitialize(Action):
    """Create the users and record `initialize` = {sysid} permanently."""


@dataclass(frozen=True)
class StartPostgres(Action):
    """Start Postgres: read-write only when `as_primary`, which needs the key held."""

    as_primary: bool = False
    upstream: str | None = None

    def makes_writable(self) -> bool:
        return self.as_primary

    def describe(self) -> str:
        if self.as_primary:
            return "StartPostgres(primary)"
        return f"StartPostgres(replica of {self.upstream or 'nobody'})"


@dataclass(frozen=True)
class StopPostgres(Action):
    """Stop Postgres and confirm no process of it is left; `fence` escalates to SIGKILL."""

    mode: StopMode = "fast"
    fence: bool = False

    def describe(self) -> str:
        return f"StopPostgres({self.mode}{', fence' if self.fence else ''})"


@dataclass(frozen=True)
class Promote(Action):
    """Promote the local replica, wait until writable, then CHECKPOINT (traps 10a)."""

    def makes_writable(self) -> bool:
        return True


@dataclass(frozen=True)
class FollowLeader(Action):
    """Stream from `leader`: repoint a running replica (reload, no restart)."""

    leader: str

    def describe(self) -> str:
        return f"FollowLeader({self.leader})"


@dataclass(frozen=True)
class Rewind(Action):
    """pg_rewind the stopped local data directory against `source`, then start as replica."""

    source: str

    def describe(self) -> str:
        return f"Rewind(from {self.source})"


@dataclass(frozen=True)
class Clone(Action):
    """pg_basebackup from `source`; an existing data directory is moved aside, never deleted."""

    source: str

    def describe(self) -> str:
        return f"Clone(from {self.source})"


@dataclass(frozen=True)
class SetSyncStandbys(Action):
    """Make synchronous_standby_names wait for exactly `names` (strict: a placeholder when
    none); record the flush LSN after the reload as the baseline of each name added."""

    names: tuple[str, ...]
    strict: bool = False

    def describe(self) -> str:
        waited = ", ".join(self.names) or ("a placeholder" if self.strict else "nobody")
        return f"SetSyncStandbys({waited})"


@dataclass(frozen=True)
class UpdateSync(Action):
    """As leader: write the `sync` key {leader, term, standbys} (None deletes it)."""

    standbys: tuple[str, ...] | None

    def describe(self) -> str:
        if self.standbys is None:
            return "UpdateSync(delete)"
        return f"UpdateSync({', '.join(self.standbys) or 'none'})"


@dataclass(frozen=True)
class RunPrePromoteHook(Action):
    """Run `hooks.pre_promote` (after taking the key, before promoting: STONITH-style
    fencing of the old primary). A non-zero exit or a timeout fails the plan, so Promote
    never runs; the next decision gives the key back (traps 15)."""


@dataclass(frozen=True)
class ConsumeRequest(Action):
    """Delete this member's operator request, compared on its revision, before acting on
    it: a request runs at most once, even if the agent dies half-way."""

    request_id: str
    action: str
    refused: str | None = None
    """Why the request is refused (consumed and answered, nothing else done)."""

    def describe(self) -> str:
        verdict = f", refused: {self.refused}" if self.refused else ""
        return f"ConsumeRequest({self.action} {self.request_id}{verdict})"


@dataclass(frozen=True)
class AppendHistory(Action):
    """Record this promotion (term, timeline, fork LSN, reason) in `history`."""

    reason: str


def describe_plan(actions: tuple[Action, ...]) -> str:
    return ", ".join(action.describe() for action in actions) or "nothing"


@dataclass(frozen=True)
class ClearFailover(Action):
    """As the new leader: delete the served `failover` request (compared on its revision)."""
