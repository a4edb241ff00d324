"""One HA cycle: observe -> decide -> act -> publish, and one log line saying what and why.

The cycle is level-based: it reads the whole state again every time and never acts on the
event that woke it. Renewal sits at the front of every leader plan, so nothing slow
comes before it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace

from pgha.adapters.hooks import ON_ROLE_CHANGE, HookEvent, HookRunner
from pgha.adapters.postgres_probe import PostgresProbe
from pgha.adapters.postgres_state import PostgresState
from pgha.adapters.store import ClusterSnapshot, ClusterStore
from pgha.agent.cluster_view import parse_cluster
from pgha.agent.cycle_record import CycleRecord
from pgha.agent.divergence import record_divergences
from pgha.agent.endpoint import publish_endpoint
from pgha.agent.execute import Executor
from pgha.agent.fencing_deadline import boottime
from pgha.agent.local_view import local_view
from pgha.agent.outcome import Outcome
from pgha.agent.primary_health import observe_primary_health
from pgha.agent.problem_log import ProblemLog
from pgha.agent.publish import Publisher, member_record
from pgha.agent.runtime import Runtime
from pgha.agent.slots import SlotKeeper
from pgha.agent.sync_log import SyncDegradationLog, degraded_now
from pgha.core.actions import RenewLeader
from pgha.core.decide import decide
from pgha.core.decision import Decision
from pgha.core.model import ClusterView, Observation, PgRunState, Policy, Tags
from pgha.errors import PghaError, StoreError
from pgha.settings import Settings

log = logging.getLogger("pgha.agent")


def own_tags(settings: Settings) -> Tags:
    """This node's tags, as the core reads them."""
    return Tags(**asdict(settings.tags))


def policy_from_settings(settings: Settings) -> Policy:
    """The policy before etcd's dynamic config is read (and its seed at bootstrap)."""
    return Policy(
        ttl_seconds=settings.ttl,
        loop_wait_seconds=settings.loop_wait,
        retry_timeout_seconds=settings.retry_timeout,
        safety_margin_seconds=settings.safety_margin,
        primary_start_timeout_seconds=settings.primary_start_timeout,
        primary_unhealthy_timeout_seconds=settings.primary_unhealthy_timeout,
        maximum_lag_on_failover_bytes=settings.maximum_lag_on_failover,
        maximum_lag_seconds_on_failover=settings.maximum_lag_seconds_on_failover,
        tags=own_tags(settings),
    )


def role_of(state: PostgresState) -> str:
    """The role a hook is told: primary, replica or stopped."""
    if state.is_primary:
        return "primary"
    if state.running:
        return "replica"
    return "stopped"


def dynamic_config_seed(settings: Settings) -> dict[str, object]:
    return {
        "ttl": settings.ttl,
        "loop_wait": settings.loop_wait,
        "retry_timeout": settings.retry_timeout,
        "safety_margin": settings.safety_margin,
        "primary_start_timeout": settings.primary_start_timeout,
        "primary_unhealthy_timeout": settings.primary_unhealthy_timeout,
        "maximum_lag_on_failover": settings.maximum_lag_on_failover,
    }


class Cycle:
    def __init__(
        self,
        *,
        settings: Settings,
        store: ClusterStore,
        probe: PostgresProbe,
        executor: Executor,
        runtime: Runtime,
        hooks: HookRunner | None = None,
        clock: Callable[[], float] = boottime,
        heartbeat: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.hooks = hooks
        self.heartbeat = heartbeat
        """Writes the heartbeat row on the local primary and returns its stamp: the
        fallback for a cycle whose commit probe did not write it (_write_heartbeat)."""
        self.probed_heartbeat_at: float | None = None
        """The heartbeat stamp this cycle's commit probe committed, if it ran and committed."""
        self.heartbeat_refused = False
        """This cycle's commit probe found the heartbeat refused: no second try this cycle."""
        self.role: str | None = None
        """The role the last cycle left Postgres in, for on_role_change."""
        self.store = store
        self.probe = probe
        self.executor = executor
        self.runtime = runtime
        self.clock = clock
        self.policy = policy_from_settings(settings)
        self.tags = self.policy.tags
        """This node's own tags (settings, not etcd), kept across policy changes."""
        self.publisher = Publisher(store, settings.node)
        executor.rebuild.announce = self._announce
        self.slots = SlotKeeper(executor.control, runtime, store)
        self.sync_log = SyncDegradationLog()
        self.last_decision: Decision | None = None
        # Read by the HTTP API's threads; each is replaced whole, never mutated.
        self.last: CycleRecord | None = None
        self.running_since: float | None = None
        self.last_snapshot: ClusterSnapshot | None = None
        self.snapshot_at: float | None = None
        self.problem_log = ProblemLog(log)
        self.paused = False
        """The last readable pause flag, kept while `config` holds garbage."""

    def use_settings(self, settings: Settings) -> None:
        """Settings read again on SIGHUP (only their tags differ): the next cycle decides
        and publishes with them."""
        self.settings = settings
        self.tags = own_tags(settings)

    def run(self) -> Decision:
        started = self.clock()
        self.running_since = started
        view, store_error = self._read_cluster()
        state = self.probe.probe()
        obs = self._observe(view, store_error, state, started)
        decision = decide(obs, self.policy)
        self.executor.ttl_seconds = int(self.policy.ttl_seconds)
        if self.role is None:
            self.role = role_of(state)
        outcomes = self.executor.run(decision, view)
        if any(not isinstance(o.action, RenewLeader) for o in outcomes):
            # Actions changed Postgres: publish what it is now, not what it was. A renewal
            # alone changes nothing, and probing a frozen server again would cost another
            # probe timeout before the next renewal.
            state = self.probe.probe()
        heartbeat_at = self._write_heartbeat(state)
        self._publish(decision, view, state, heartbeat_at)
        self._note_sync(view, state, outcomes)
        # After the plan and the publishing, so slots never delay a renewal (agent/slots.py).
        self.slots.keep(view, state, self.policy, self.clock())
        self._ensure_users_once(state)
        self._on_role_change(role_of(state), view)
        self._log(obs, decision, outcomes, self.clock() - started)
        self.last_decision = decision
        claim_term = self.runtime.claim.term if self.runtime.claim is not None else None
        self.last = CycleRecord(started, self.clock(), state, claim_term, decision)
        return decision

    # --- observe --------------------------------------------------------------------------

    def _read_cluster(self) -> tuple[ClusterView | None, str | None]:
        try:
            if self.runtime.lease is None:
                self.runtime.lease = self.store.grant_lease(int(self.policy.ttl_seconds))
                self.publisher.forget()
            snapshot = self.store.read_cluster()
            self.last_snapshot, self.snapshot_at = snapshot, self.clock()
        except StoreError as exc:
            return None, str(exc)
        parsed = parse_cluster(snapshot, self.policy, self.paused)
        self.policy = replace(parsed.policy, tags=self.tags)
        self.paused = parsed.view.paused
        self.problem_log.update(parsed.unreadable)
        return parsed.view, None

    def _observe(
        self, view: ClusterView | None, error: str | None, state: PostgresState, now: float
    ) -> Observation:
        runtime = self.runtime
        members = view.members if view is not None else {}
        local = local_view(state, members, runtime.last_in_recovery)
        if local.run_state is PgRunState.RUNNING:
            runtime.last_in_recovery = local.in_recovery
        self.probed_heartbeat_at, self.heartbeat_refused = None, False
        local = observe_primary_health(runtime, local, state, self._check_commit, now)
        if view is not None:
            self._note_leader(view, now)
        if runtime.claim is not None and not local.running:
            if runtime.primary_down_since is None:
                runtime.primary_down_since = now
        else:
            runtime.primary_down_since = None
        return Observation(now, runtime.memory(), local, view, error, wall_now=time.time())

    def _check_commit(self) -> str | None:
        """The commit probe, for observe_primary_health: its transaction stamps the
        heartbeat row, and that stamp is the one this cycle publishes."""
        check = self.probe.check_commit()
        self.probed_heartbeat_at = check.heartbeat_at
        self.heartbeat_refused = check.heartbeat_problem is not None
        if check.heartbeat_problem is not None:
            log.warning(
                "Postgres refused the heartbeat row (%s); it committed a test transaction "
                "without it, so this costs only the heartbeat: check pgha.heartbeat",
                check.heartbeat_problem,
            )
        return check.failure

    def _note_leader(self, view: ClusterView, now: float) -> None:
        runtime = self.runtime
        if view.leader is not None:
            runtime.last_leader_revision = view.revision
            runtime.no_leader_since = None
            runtime.no_leader_revision = None
        elif runtime.no_leader_since is None:
            runtime.no_leader_since = now
            runtime.no_leader_revision = view.revision

    def _note_sync(
        self, view: ClusterView | None, state: PostgresState, outcomes: list[Outcome]
    ) -> None:
        """Log once when this leader's synchronous replication degrades or recovers."""
        claim, mode = self.runtime.claim, self.policy.synchronous_mode
        if claim is not None and (view is None or not state.is_primary):
            return  # etcd or Postgres unread this cycle: nothing new is known, nothing said
        term = claim.term if claim is not None else None
        now = degraded_now(
            leading=claim is not None,
            mode=mode,
            view=view,
            outcomes=outcomes,
            me=self.runtime.name,
            term=term,
        )
        self.sync_log.note(now, mode)

    def _ensure_users_once(self, state: PostgresState) -> None:
        """As leader of a read-write primary, once per leadership (after a promotion, or
        after this agent restarted and rebound its key): create or update the database
        users, so that one added to the settings (the rewind user, after an upgrade) exists
        without waiting for a failover."""
        runtime = self.runtime
        if runtime.users_ensured or runtime.claim is None or not state.is_primary:
            return
        if runtime.primary_unhealthy_since is not None:
            return  # a primary that cannot commit would only hold the next renewal up
        runtime.users_ensured = True  # one try: a hung call must not recur every cycle
        try:
            self.executor.control.ensure_users()
        except PghaError as exc:
            log.warning(
                "could not set up the database users (tried again in the next leadership): %s",
                exc,
            )

    def _on_role_change(self, role: str, view: ClusterView | None) -> None:
        """Run the on_role_change hooks when this cycle changed the role; as leader, only
        for as long as still leaves a renewal time before the fencing deadline."""
        if role == self.role:
            return
        self.role = role
        if self.hooks is None or not self.hooks.configured(ON_ROLE_CHANGE):
            return
        runtime = self.runtime
        budget = self.settings.hooks.timeout * len(self.settings.hooks.on_role_change)
        if runtime.claim is not None and runtime.fencing_deadline is not None:
            renewal = self.policy.retry_timeout_seconds + 1
            budget = min(budget, runtime.fencing_deadline - self.clock() - renewal)
        leader = view.leader.holder if view is not None and view.leader is not None else None
        if runtime.claim is not None:
            leader = runtime.name
        term = runtime.claim.term if runtime.claim is not None else None
        if term is None and view is not None and view.leader is not None:
            term = view.leader.term
        event = HookEvent(
            ON_ROLE_CHANGE, role, term, self.settings.cluster, leader, self.settings.node
        )
        self.hooks.run(event, budget)

    # --- heartbeat, publish and log -------------------------------------------------------

    def _write_heartbeat(self, state: PostgresState) -> float | None:
        """As leader of a read-write primary after the plan: the heartbeat stamp to publish.
        This cycle's commit probe wrote it, if it ran and committed; otherwise (the cycle
        that promoted this node) stamp the row now, after the plan, so never before a
        renewal. Not when the probe found the heartbeat refused or the primary unable to
        commit: that would only cost another timeout before the next renewal. A failure is
        logged and costs only this cycle's stamp."""
        runtime = self.runtime
        if runtime.claim is None or not state.is_primary:
            return None
        if self.probed_heartbeat_at is not None:
            return self.probed_heartbeat_at
        if self.heartbeat_refused or runtime.primary_unhealthy_since is not None:
            return None
        deadline = runtime.fencing_deadline
        if self.heartbeat is None or deadline is None or self.clock() >= deadline:
            return None  # a leader past its deadline is being fenced: no writes of ours
        try:
            return self.heartbeat()
        except PghaError as exc:
            log.warning("could not write the heartbeat row: %s", exc)
            return None

    def _publish(
        self,
        decision: Decision,
        view: ClusterView | None,
        state: PostgresState,
        heartbeat_at: float | None = None,
    ) -> None:
        runtime = self.runtime
        if view is None or runtime.lease is None:
            return
        try:
            if runtime.claim is None and self.store.keep_alive(runtime.lease) <= 0:
                runtime.lease = None
                return
            if self.last_snapshot is not None:
                self.publisher.notice(self.last_snapshot)
            local = local_view(state, view.members, runtime.last_in_recovery)
            record = member_record(
                self.settings, local, runtime, decision, probed=state, now=self.clock()
            )
            self.publisher.publish_member(record, local.position, runtime.lease, self.clock())
            if runtime.claim is not None and state.is_primary:
                claim, lease, seen = runtime.claim, runtime.lease, self.last_snapshot
                publish_endpoint(self.store, self.settings, claim, lease, seen)
                if seen is not None:
                    record_divergences(self.store, claim, seen)
            if runtime.claim is not None and local.writable:
                self.publisher.publish_status(
                    runtime.claim,
                    local.timeline,
                    local.position,
                    self.clock(),
                    heartbeat_at=heartbeat_at,
                    heartbeat_every_seconds=self.policy.maximum_lag_seconds_on_failover / 2,
                )
        except StoreError as exc:
            log.warning("could not publish this member's state: %s", exc)

    def _announce(self, busy_with: str) -> None:
        """Republish the last member record with `state` = busy_with ("rewinding",
        "cloning"), before a long action starts: `pgha status` shows it while it runs."""
        last, lease = self.publisher.last_record, self.runtime.lease
        if last is None or lease is None:
            return
        record = {**last, "state": busy_with}
        self.publisher.publish_member(record, self.publisher.last_position, lease, self.clock())

    def _log(
        self, obs: Observation, decision: Decision, outcomes: list[Outcome], took: float
    ) -> None:
        leader = obs.cluster.leader if obs.cluster is not None else None
        role = "primary" if obs.local.writable else obs.local.run_state.value
        if obs.local.run_state is PgRunState.RUNNING and obs.local.in_recovery:
            role = "replica"
        done = "; ".join(outcome.describe() for outcome in outcomes) or "nothing"
        failed = any(not outcome.ok for outcome in outcomes)
        level = logging.WARNING if failed else logging.INFO
        log.log(
            level,
            "node=%s role=%s leader=%s term=%s code=%s reason=%r actions=[%s] took=%.3fs",
            self.settings.node,
            role,
            leader.holder if leader is not None else "none",
            leader.term if leader is not None else "-",
            decision.code,
            decision.reason,
            done,
            took,
        )
