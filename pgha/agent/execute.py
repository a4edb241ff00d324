"""Run a decision's actions in order through the adapters; stop at the first failure.

Each action either succeeds or raises; the executor records an outcome per action and
stops there, so `Promote` never runs after a lost `AcquireLeader`. Before any action that
makes or keeps Postgres writable it reads the clock again and refuses the action when the
fencing deadline is too close (traps 2): a plan can go stale between decide and act.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pgha.adapters.hooks import PRE_PROMOTE, HookEvent, HookRunner
from pgha.adapters.postgres_control import PostgresControl
from pgha.adapters.postgres_history import timeline_fork_point
from pgha.adapters.postgres_probe import PostgresProbe
from pgha.adapters.postgres_state import Upstream, format_lsn
from pgha.adapters.store import (
    CONFIG,
    HISTORY,
    ClusterStore,
    LeaderKey,
    Record,
)
from pgha.agent.fencing_deadline import boottime
from pgha.agent.guard import fence
from pgha.agent.operator_records import RecordWriter
from pgha.agent.outcome import ActionFailed, Outcome
from pgha.agent.rebuild import Rebuilder
from pgha.agent.runtime import Runtime
from pgha.agent.slots import own_slot
from pgha.core import actions as a
from pgha.core.decision import Decision
from pgha.core.model import ClusterView
from pgha.core.sync import render_names
from pgha.errors import PghaError
from pgha.history_summary import promotion_fields

log = logging.getLogger("pgha.agent")

WRITABLE_ACTION_BUDGET_SECONDS = 1.0
"""How long a promote or a primary start may take before it must have finished, at most."""


HISTORY_ENTRIES_KEPT = 100


class Executor:
    def __init__(
        self,
        *,
        store: ClusterStore,
        control: PostgresControl,
        probe: PostgresProbe,
        runtime: Runtime,
        dynamic_config_seed: dict[str, object],
        hooks: HookRunner | None = None,
        cluster_name: str = "",
        clock: Callable[[], float] = boottime,
    ) -> None:
        self.store = store
        self.control = control
        self.probe = probe
        self.runtime = runtime
        self.seed = dynamic_config_seed
        self.hooks = hooks
        self.cluster_name = cluster_name
        self.clock = clock
        self.records = RecordWriter(store, runtime)
        self.rebuild = Rebuilder(control, probe, runtime)
        self.decision_code = ""
        """The code of the decision being carried out: its history entry records it."""
        self.ttl_seconds = 30
        """The cluster's ttl: how long a handoff reserves the key, and how long a node whose
        pre_promote hook failed sits out the election."""
        self._handlers: dict[type[a.Action], Callable[[Any, ClusterView | None], str | None]] = {
            a.AcquireLeader: self._acquire_leader,
            a.RenewLeader: self._renew_leader,
            a.RebindLeader: self._rebind_leader,
            a.ReleaseLeader: self._release_leader,
            a.ForgetLeadership: self._forget_leadership,
            a.ClaimInitialize: self._claim_initialize,
            a.InitDb: self._init_db,
            a.FinishInitialize: self._finish_initialize,
            a.StartPostgres: self._start_postgres,
            a.StopPostgres: self._stop_postgres,
            a.Promote: self._promote,
            a.FollowLeader: self._follow_leader,
            a.Rewind: self._rewind,
            a.Clone: self._clone,
            a.AppendHistory: self._append_history,
            a.UpdateSwitchover: self.records.update_switchover,
            a.ClearFailover: self.records.clear_failover,
            a.RunPrePromoteHook: self._run_pre_promote_hook,
            a.ConsumeRequest: self.records.consume_request,
            a.SetSyncStandbys: self._set_sync_standbys,
            a.UpdateSync: self.records.update_sync,
        }

    def run(self, decision: Decision, view: ClusterView | None) -> list[Outcome]:
        self.decision_code = decision.code
        outcomes: list[Outcome] = []
        for action in decision.actions:
            try:
                self._check_deadline(action)
                detail = self._run_one(action, view)
            except PghaError as exc:
                outcomes.append(Outcome(action, False, str(exc)))
                break
            outcomes.append(Outcome(action, True, detail or ""))
        self.records.answer_request(outcomes)
        return outcomes

    def _check_deadline(self, action: a.Action) -> None:
        if not action.makes_writable():
            return
        deadline = self.runtime.fencing_deadline
        now = self.clock()
        if deadline is None or now >= deadline - WRITABLE_ACTION_BUDGET_SECONDS:
            left = "no deadline" if deadline is None else f"{deadline - now:.2f} s left"
            raise ActionFailed(
                f"refused: the fencing deadline is too close ({left}); the plan went stale"
            )

    def _run_one(self, action: a.Action, view: ClusterView | None) -> str | None:
        return self._handlers[type(action)](action, view)

    # --- the key ------------------------------------------------------------------------

    def _keep_lease(self) -> float:
        """Refresh our lease; returns when the refresh was sent (the fencing clock starts there)."""
        runtime = self.runtime
        if runtime.lease is None:
            raise ActionFailed("no lease: cannot act on the leader key this cycle")
        sent_at = self.clock()
        if self.store.keep_alive(runtime.lease) <= 0:
            runtime.lease = None
            raise ActionFailed("our etcd lease has expired")
        return sent_at

    def _acquire_leader(self, action: a.AcquireLeader, view: ClusterView | None) -> str:
        sent_at = self._keep_lease()
        assert self.runtime.lease is not None
        claim = self.store.acquire_leader(self.runtime.name, self.runtime.lease)
        if claim is None:
            raise ActionFailed("another node took the key first")
        self.runtime.renewed(sent_at, claim)
        return f"term {claim.term}"

    def _renew_leader(self, action: a.RenewLeader, view: ClusterView | None) -> str:
        runtime = self.runtime
        if runtime.claim is None or runtime.lease is None:
            raise ActionFailed("no claim to renew")
        sent_at = self.clock()
        claim = runtime.claim
        leader = view.leader if view is not None else None
        # This cycle's snapshot already showed the key bound to the claim: only a keepalive.
        shown = leader is not None and leader.bound_to(claim.name, claim.term, claim.lease_id)
        if not self.store.renew_leader(claim, runtime.lease, confirm=not shown):
            raise ActionFailed("etcd says the key or the lease is no longer ours")
        runtime.renewed(sent_at, runtime.claim)
        left = (runtime.fencing_deadline or sent_at) - self.clock()
        return f"fencing deadline in {left:.1f} s"

    def _rebind_leader(self, action: a.RebindLeader, view: ClusterView | None) -> str:
        assert view is not None
        assert view.leader is not None
        sent_at = self._keep_lease()
        assert self.runtime.lease is not None
        leader = view.leader
        seen = LeaderKey(leader.holder, leader.term, leader.lease_id, leader.mod_revision)
        claim = self.store.rebind_leader(self.runtime.name, seen, self.runtime.lease)
        if claim is None:
            raise ActionFailed("the leader key changed before we could re-bind it")
        self.runtime.renewed(sent_at, claim)
        return f"term {claim.term}"

    def _release_leader(self, action: a.ReleaseLeader, view: ClusterView | None) -> str:
        runtime = self.runtime
        if runtime.claim is None:
            raise ActionFailed("no claim to release")
        state = self.probe.probe()
        if state.running and not (action.never_promoted and state.in_recovery is True):
            raise ActionFailed("refusing to release the key: Postgres is not confirmed stopped")
        final_lsn = action.final_lsn
        if action.after_clean_stop:
            final_lsn = self._shutdown_checkpoint()
        handoff = None
        handoff_lease = None
        if final_lsn is not None:
            handoff = {
                "from": runtime.name,
                "to": action.to_node,
                "term": runtime.claim.term,
                "final_lsn": format_lsn(final_lsn),
            }
            handoff_lease = self.store.grant_lease(self.ttl_seconds)
        released = self.store.release_leader(runtime.claim, handoff, handoff_lease)
        runtime.lost_leadership(released=True)
        if not released:
            raise ActionFailed("the key was no longer ours")
        return "released"

    def _shutdown_checkpoint(self) -> int:
        """The final LSN of a switchover: the shutdown checkpoint of the clean stop just made.
        Without a clean stop some WAL may not have reached the candidate: no handoff then."""
        control = self.control.read_control_data()
        if control.cluster_state != "shut down":
            raise ActionFailed(
                f"Postgres is {control.cluster_state!r}, not cleanly shut down: keeping the "
                "key rather than handing it to a candidate that may lack WAL"
            )
        return control.checkpoint_lsn

    def _set_sync_standbys(self, action: a.SetSyncStandbys, view: ClusterView | None) -> str:
        value = render_names(action.names, action.strict)
        flush = self.control.set_synchronous_standby_names(value)
        baselines = self.runtime.sync_baselines
        for name in list(baselines):
            if name not in action.names:
                del baselines[name]
        for name in action.names:
            if flush is not None and name not in baselines:
                baselines[name] = flush
        taken = f", flush baseline {format_lsn(flush)}" if flush is not None else ""
        shown = value or "''"
        return f"synchronous_standby_names = {shown}{taken}"

    def _run_pre_promote_hook(self, action: a.RunPrePromoteHook, view: ClusterView | None) -> str:
        runtime = self.runtime
        if self.hooks is None or not self.hooks.configured(PRE_PROMOTE):
            return "no hook configured"
        if runtime.claim is None or runtime.fencing_deadline is None:
            raise ActionFailed("no claim: the pre_promote hook runs only after taking the key")
        # The promotion after the hook must still fit before the fencing deadline.
        now = self.clock()
        budget = runtime.fencing_deadline - now - 2 * WRITABLE_ACTION_BUDGET_SECONDS
        term, me = runtime.claim.term, runtime.name
        event = HookEvent(PRE_PROMOTE, "primary", term, self.cluster_name, me, me)
        results = self.hooks.run(event, budget)
        failed = next((result for result in results if not result.ok), None)
        if failed is None:
            return "; ".join(result.describe() for result in results)
        runtime.pre_promote_failed_term = runtime.claim.term
        runtime.sit_out_reason = f"its pre_promote hook {failed.describe()}"
        runtime.election_backoff_until = self.clock() + self.ttl_seconds
        raise ActionFailed(f"pre_promote hook {failed.describe()}: not promoting")

    def _forget_leadership(self, action: a.ForgetLeadership, view: ClusterView | None) -> str:
        # The leader key may still be bound to our lease; keeping that lease alive for our
        # member record would keep the key alive too, and nobody could ever take over.
        # So the lease goes with the claim: revoked if etcd answers, abandoned otherwise.
        runtime = self.runtime
        lease, runtime.lease = runtime.lease, None
        runtime.lost_leadership()
        if lease is None:
            return "no lease"
        try:
            self.store.revoke_lease(lease)
        except PghaError as exc:
            return f"lease abandoned, it expires on its own ({exc})"
        return "lease revoked"

    # --- bootstrap ------------------------------------------------------------------------

    def _claim_initialize(self, action: a.ClaimInitialize, view: ClusterView | None) -> str:
        sent_at = self._keep_lease()
        assert self.runtime.lease is not None
        claim = self.store.claim_initialize(self.runtime.name, self.runtime.lease)
        if claim is None:
            raise ActionFailed("another node claimed the bootstrap first")
        self.runtime.renewed(sent_at, claim)
        return f"term {claim.term}"

    def _init_db(self, action: a.InitDb, view: ClusterView | None) -> None:
        self.control.initdb()

    def _finish_initialize(self, action: a.FinishInitialize, view: ClusterView | None) -> str:
        claim = self.runtime.claim
        if claim is None:
            raise ActionFailed("lost the key during bootstrap")
        self.control.ensure_users()
        self.runtime.users_ensured = True
        state = self.probe.probe()
        if state.system_identifier is None:
            raise ActionFailed("cannot read the new cluster's system identifier")
        sysid = str(state.system_identifier)
        self.store.put(CONFIG, self.seed, expected_mod_revision=0, as_leader=claim)
        if not self.store.finish_initialize(claim, sysid):
            raise ActionFailed("lost the key before recording the system identifier")
        self.runtime.checkpoint_after_promote = True
        return f"system identifier {sysid}"

    # --- Postgres -------------------------------------------------------------------------

    def _start_postgres(self, action: a.StartPostgres, view: ClusterView | None) -> None:
        if action.as_primary:
            self.control.start_primary()
            self.runtime.checkpoint_after_promote = True
            return
        upstream = self._upstream(action.upstream, view) if action.upstream else None
        self.control.start_replica(upstream)

    def _stop_postgres(self, action: a.StopPostgres, view: ClusterView | None) -> str:
        data_dir = self.control.paths.data_dir
        if action.fence:
            how = fence(data_dir)
            if how.startswith("UNFENCEABLE"):
                raise ActionFailed(how)
        try:
            self.control.stop(mode=action.mode, timeout_seconds=60)
        except PghaError:
            self.control.kill()
            return "killed after a failed stop"
        return "stopped"

    def _promote(self, action: a.Promote, view: ClusterView | None) -> str:
        self.control.promote()
        self.control.checkpoint()
        self.runtime.checkpoint_after_promote = True
        return "promoted and checkpointed"

    def _follow_leader(self, action: a.FollowLeader, view: ClusterView | None) -> None:
        self.control.follow(self._upstream(action.leader, view))

    def _rewind(self, action: a.Rewind, view: ClusterView | None) -> str:
        source = self._upstream(action.source, view)
        return self.rebuild.rewind(action.source, source, view)

    def _clone(self, action: a.Clone, view: ClusterView | None) -> str:
        return self.rebuild.clone(self._upstream(action.source, view))

    def _append_history(self, action: a.AppendHistory, view: ClusterView | None) -> str:
        claim = self.runtime.claim
        if claim is None:
            raise ActionFailed("no claim: only the leader appends to history")
        state = self.probe.probe()
        timeline = state.timeline or 1
        fork = timeline_fork_point(self.control.paths.data_dir, timeline)
        # Postgres is writable by now: the outage ends here, and began (at the latest) when
        # this node first saw the key gone (see promotion_fields).
        at = time.time()
        seen = self.runtime.no_leader_since
        no_leader_for = self.clock() - seen if seen is not None else None
        lease_ttl = self.runtime.lease.ttl_seconds if self.runtime.lease is not None else None
        entry = {
            "term": claim.term,
            "timeline": timeline,
            "lsn": format_lsn(fork) if fork is not None else None,
            "node": self.runtime.name,
            "at": at,
            "reason": action.reason,
            **promotion_fields(self.decision_code, at, no_leader_for, lease_ttl),
        }
        for _ in range(3):
            current = self.store.read_cluster().get(HISTORY)
            entries = []
            if isinstance(current, Record) and isinstance(current.data, list):
                entries = list(current.data)
            expected = current.mod_revision if current is not None else 0
            history = [*entries, entry][-HISTORY_ENTRIES_KEPT:]
            if self.store.put(HISTORY, history, expected_mod_revision=expected, as_leader=claim):
                return f"timeline {timeline}"
        raise ActionFailed("history changed under us three times")

    def _upstream(self, name: str, view: ClusterView | None) -> Upstream:
        member = view.members.get(name) if view is not None else None
        if member is None or not member.host:
            raise ActionFailed(f"member {name} has published no address to stream from")
        members = view.members if view is not None else {}
        return Upstream(member.host, member.port, own_slot(self.runtime.name, members))
