"""Turn a probe of the local Postgres into the core's LocalPostgres.

A stopped server is described from pg_control: whether it last ran as a primary, whether
it shut down cleanly, and how far its WAL is known to go. The upstream is named by the
member whose address the walreceiver streams from.
"""

from __future__ import annotations

from collections.abc import Mapping

from pgha.adapters.postgres_state import PostgresState
from pgha.core.model import LocalPostgres, MemberInfo, PgRunState, StandbyFeed
from pgha.core.sync import parse_names

_NO_ANSWER = ("timed out", "not answer", "timeout expired")


def local_view(
    state: PostgresState,
    members: Mapping[str, MemberInfo],
    last_in_recovery: bool | None = None,
) -> LocalPostgres:
    """`last_in_recovery` is what the previous probe saw, for a server that does not answer."""
    sysid = str(state.system_identifier) if state.system_identifier is not None else None
    if not state.initialized:
        return LocalPostgres(PgRunState.NO_DATA, timeline=None, position=None)
    if not state.running:
        return _stopped(state)
    if not state.accepting_connections:
        status = state.postmaster_status
        problem = state.problem or ""
        # A frozen postmaster never completes the handshake: libpq's connect_timeout
        # ("timeout expired") may fire before the session's own deadline ("did not answer").
        unreachable = any(sign in problem for sign in _NO_ANSWER)
        run_state = PgRunState.UNREACHABLE if unreachable else PgRunState.STARTING
        if status == "stopping":
            run_state = PgRunState.STARTING
        # Without an answer we cannot know it is read-only: a server not last seen as a
        # standby is treated as possibly writable by the fencing rules.
        in_recovery = last_in_recovery is True if unreachable else True
        return LocalPostgres(run_state, in_recovery=in_recovery, system_identifier=sysid)
    return LocalPostgres(
        PgRunState.RUNNING,
        in_recovery=bool(state.in_recovery),
        timeline=state.timeline,
        position=state.position,
        upstream=_upstream_member(state, members),
        system_identifier=sysid,
        standbys=tuple(
            StandbyFeed(r.application_name, r.state == "streaming", r.sync_state, r.flush_lsn)
            for r in state.replicas
        ),
        sync_names=parse_names(state.synchronous_standby_names),
        flush_lsn=state.flush_lsn,
        heartbeat_replayed_at=state.heartbeat_at,
    )


def _stopped(state: PostgresState) -> LocalPostgres:
    control = state.control
    if control is None:
        return LocalPostgres(PgRunState.STOPPED, timeline=None, position=None)
    if control.was_standby:
        position = max(control.min_recovery_end_lsn, control.checkpoint_lsn)
        timeline = max(control.min_recovery_end_timeline, control.checkpoint_timeline)
    else:
        position, timeline = control.checkpoint_lsn, control.checkpoint_timeline
    return LocalPostgres(
        PgRunState.STOPPED,
        in_recovery=True,
        timeline=timeline,
        position=position,
        system_identifier=str(control.system_identifier),
        was_primary=not control.was_standby,
        stopped_cleanly=control.shut_down_cleanly,
    )


def _upstream_member(state: PostgresState, members: Mapping[str, MemberInfo]) -> str | None:
    """The member this replica is set up to follow (whether or not it streams right now):
    repointing to the same upstream again would only restart a walreceiver that is
    already retrying."""
    configured = state.configured_upstream
    if configured is None:
        return None
    for member in members.values():
        if (member.host, member.port) == (configured.host, configured.port):
            return member.name
    return None
