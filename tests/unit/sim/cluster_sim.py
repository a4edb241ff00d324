"""A deterministic simulation of a whole cluster: three decision cores on the memory store.

Each simulated node runs the real `decide()` on an observation built the way the agent
builds it (the real snapshot parser on the memory store), and a small executor applies
the plan to a simulated Postgres. A simulated guard fences a node's Postgres when its
deadline passes, whatever its agent is doing. Faults: kill a whole host, freeze an
agent, cut a node off from etcd, and heal each of them.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field, replace

from pgha.adapters.memory_store import MemoryEtcd, MemoryStore
from pgha.adapters.store import STATUS, LeaderClaim, LeaderKey, Lease
from pgha.agent.cluster_view import parse_cluster
from pgha.core import actions as a
from pgha.core.decide import decide
from pgha.core.model import (
    ClusterView,
    LocalPostgres,
    NodeMemory,
    Observation,
    PgRunState,
    Policy,
    format_lsn,
)
from pgha.errors import StoreError

POLICY = Policy(
    ttl_seconds=10, loop_wait_seconds=1, retry_timeout_seconds=3, safety_margin_seconds=2
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SimPostgres:
    state: PgRunState = PgRunState.NO_DATA
    in_recovery: bool = True
    timeline: int = 1
    position: int = 0
    upstream: str | None = None
    was_primary: bool = False
    clean: bool = True

    @property
    def writable(self) -> bool:
        return self.state is PgRunState.RUNNING and not self.in_recovery

    def local(self) -> LocalPostgres:
        if self.state is PgRunState.NO_DATA:
            return LocalPostgres(PgRunState.NO_DATA, timeline=None, position=None)
        if self.state is PgRunState.STOPPED:
            return LocalPostgres(
                PgRunState.STOPPED,
                timeline=self.timeline,
                position=self.position,
                system_identifier="1",
                was_primary=self.was_primary,
                stopped_cleanly=self.clean,
            )
        return LocalPostgres(
            PgRunState.RUNNING,
            in_recovery=self.in_recovery,
            timeline=self.timeline,
            position=self.position,
            upstream=self.upstream,
            system_identifier="1",
        )

    def stop(self, clean: bool) -> None:
        if self.state is PgRunState.RUNNING:
            self.was_primary = not self.in_recovery
            self.clean = clean
            self.state = PgRunState.STOPPED
            self.upstream = None


@dataclass
class SimNode:
    name: str
    store: MemoryStore
    pg: SimPostgres = field(default_factory=SimPostgres)
    lease: Lease | None = None
    claim: LeaderClaim | None = None
    deadline: float | None = None
    guard_deadline: float | None = None
    memory: NodeMemory | None = None
    alive: bool = True
    frozen: bool = False
    next_cycle: float = 0.0
    no_leader_since: float | None = None
    no_leader_revision: int | None = None
    last_leader_revision: int = 0
    down_since: float | None = None
    checkpointed: bool = False


class Violation(AssertionError):
    pass


class ClusterSim:
    def __init__(self, seed: int, nodes: int = 3) -> None:
        self.random = random.Random(seed)
        self.clock = Clock()
        self.server = MemoryEtcd(self.clock)
        self.nodes = [
            SimNode(f"pg{i + 1}", MemoryStore(self.server, "/pgha/sim/")) for i in range(nodes)
        ]
        self.history: list[str] = []
        self.promotions = 0

    # --- the world ------------------------------------------------------------------------

    def step(self, faults: bool = True) -> None:
        self.clock.now += self.random.uniform(0.1, 0.6)
        self.server.tick()
        if faults:
            self._fault()
        for node in self.nodes:
            self._guard(node)
        for node in self.random.sample(self.nodes, len(self.nodes)):
            if node.alive and not node.frozen and self.clock.now >= node.next_cycle:
                self._cycle(node)
                node.next_cycle = self.clock.now + POLICY.loop_wait_seconds
        self._replicate()
        self._check()

    def _fault(self) -> None:
        roll = self.random.random()
        node = self.random.choice(self.nodes)
        if roll < 0.02 and node.alive:
            self.history.append(f"{self.clock.now:.1f} kill {node.name}")
            node.alive = False
            node.pg.stop(clean=False)
            node.guard_deadline = None
        elif roll < 0.04 and not node.alive:
            self.history.append(f"{self.clock.now:.1f} restart {node.name}")
            fresh = SimNode(node.name, node.store, pg=node.pg)
            self.nodes[self.nodes.index(node)] = fresh
        elif roll < 0.06:
            node.frozen = not node.frozen
            self.history.append(
                f"{self.clock.now:.1f} {'freeze' if node.frozen else 'thaw'} {node.name}"
            )
        elif roll < 0.08:
            node.store.reachable = not node.store.reachable
            self.history.append(
                f"{self.clock.now:.1f} {'cut' if not node.store.reachable else 'heal'} {node.name}"
            )

    def _guard(self, node: SimNode) -> None:
        """The guard runs beside Postgres: a frozen agent does not stop it, a dead host does."""
        if node.alive and node.guard_deadline is not None and self.clock.now >= node.guard_deadline:
            if node.pg.writable:
                self.history.append(f"{self.clock.now:.1f} guard fences {node.name}")
            node.pg.stop(clean=True)

    def _replicate(self) -> None:
        primaries = [n for n in self.nodes if n.pg.writable]
        for primary in primaries:
            primary.pg.position += self.random.randint(0, 4096)
            if primary.claim is not None and primary.store.reachable:
                with contextlib.suppress(StoreError):
                    position = {"position": format_lsn(primary.pg.position)}
                    primary.store.put(STATUS, position, as_leader=primary.claim)
        for node in self.nodes:
            source = next((n for n in primaries if n.name == node.pg.upstream), None)
            streams = node.pg.state is PgRunState.RUNNING and node.pg.in_recovery
            if streams and source is not None and source.pg.timeline >= node.pg.timeline:
                node.pg.timeline = source.pg.timeline
                lag = self.random.randint(0, 2048)
                node.pg.position = max(node.pg.position, source.pg.position - lag)

    def _check(self) -> None:
        writable = [n.name for n in self.nodes if n.pg.writable]
        if len(writable) > 1:
            raise Violation(
                f"two writable primaries {writable} at {self.clock.now:.1f}:\n"
                + "\n".join(self.history[-30:])
            )

    # --- one agent cycle ------------------------------------------------------------------

    def _cycle(self, node: SimNode) -> None:
        store = node.store
        view: ClusterView | None
        try:
            if node.lease is None:
                node.lease = store.grant_lease(int(POLICY.ttl_seconds))
            view = parse_cluster(store.read_cluster(), POLICY).view
        except StoreError:
            view = None
        now = self.clock.now
        if view is not None:
            if view.leader is not None:
                node.last_leader_revision, node.no_leader_since, node.no_leader_revision = (
                    view.revision,
                    None,
                    None,
                )
            elif node.no_leader_since is None:
                node.no_leader_since, node.no_leader_revision = now, view.revision
        if node.claim is not None and node.pg.state is not PgRunState.RUNNING:
            node.down_since = node.down_since if node.down_since is not None else now
        else:
            node.down_since = None
        memory = NodeMemory(
            name=node.name,
            lease_id=node.lease.id if node.lease else None,
            claimed_term=node.claim.term if node.claim else None,
            fencing_deadline=node.deadline,
            primary_down_since=node.down_since,
            no_leader_since=node.no_leader_since,
            last_leader_revision=node.last_leader_revision,
        )
        decision = decide(Observation(now, memory, node.pg.local(), view), POLICY)
        self.history.append(f"{now:.1f} {node.name} {decision.describe()}")
        for action in decision.actions:
            try:
                if not self._apply(node, action, view):
                    break
            except StoreError:
                break
        self._publish(node, decision.code)

    def _publish(self, node: SimNode, code: str) -> None:
        if node.lease is None:
            return
        pg = node.pg
        record = {
            "host": "127.0.0.1",
            "port": 5432,
            "running": pg.state is PgRunState.RUNNING,
            "in_recovery": pg.in_recovery,
            "timeline": pg.timeline,
            "position": format_lsn(pg.position),
            "no_leader_revision": node.no_leader_revision,
            "checkpoint_after_promote": node.checkpointed,
            "sysid": "1",
            "decision": {"code": code, "reason": ""},
        }
        try:
            if node.store.keep_alive(node.lease) <= 0:
                node.lease = None
                return
            node.store.publish_member(node.name, record, node.lease)
        except StoreError:
            pass

    def _renewed(self, node: SimNode, sent: float, claim: LeaderClaim) -> None:
        assert node.lease is not None
        node.claim = claim
        node.deadline = sent + node.lease.ttl_seconds - POLICY.safety_margin_seconds
        node.guard_deadline = node.deadline

    def _forget(self, node: SimNode) -> None:
        node.claim, node.deadline, node.guard_deadline, node.checkpointed = None, None, None, False

    def _apply(self, node: SimNode, action: a.Action, view: ClusterView | None) -> bool:
        now = self.clock.now
        if action.makes_writable() and (node.deadline is None or now >= node.deadline - 1.0):
            return False
        handled = self._apply_key_action(node, action, view)
        if handled is None:
            self._apply_postgres_action(node, action)
            return True
        return handled

    def _apply_key_action(
        self, node: SimNode, action: a.Action, view: ClusterView | None
    ) -> bool | None:
        """Actions on the leader key; None for an action that is not about the key."""
        now, store = self.clock.now, node.store
        if isinstance(action, (a.AcquireLeader, a.ClaimInitialize)):
            return self._acquire(node, action)
        if isinstance(action, a.RenewLeader):
            if node.claim is None or node.lease is None:
                return False
            if not store.renew_leader(node.claim, node.lease):
                return False
            self._renewed(node, now, node.claim)
        elif isinstance(action, a.RebindLeader):
            assert view is not None
            assert view.leader is not None
            assert node.lease is not None
            leader = view.leader
            seen = LeaderKey(leader.holder, leader.term, leader.lease_id, leader.mod_revision)
            claim = store.rebind_leader(node.name, seen, node.lease)
            if claim is None:
                return False
            self._renewed(node, now, claim)
        elif isinstance(action, a.ReleaseLeader):
            if node.pg.state is PgRunState.RUNNING or node.claim is None:
                return False
            store.release_leader(node.claim)
            self._forget(node)
        elif isinstance(action, a.ForgetLeadership):
            self._forget(node)
            lease, node.lease = node.lease, None
            if lease is not None:
                store.revoke_lease(lease)
        elif isinstance(action, a.FinishInitialize):
            assert node.claim is not None
            node.checkpointed = True
            return store.finish_initialize(node.claim, "1")
        else:
            return None
        return True

    def _acquire(self, node: SimNode, action: a.AcquireLeader | a.ClaimInitialize) -> bool:
        store = node.store
        if node.lease is None or store.keep_alive(node.lease) <= 0:
            node.lease = None
            return False
        if isinstance(action, a.AcquireLeader):
            claim = store.acquire_leader(node.name, node.lease)
        else:
            claim = store.claim_initialize(node.name, node.lease)
        if claim is None:
            return False
        self._renewed(node, self.clock.now, claim)
        return True

    def _apply_postgres_action(self, node: SimNode, action: a.Action) -> None:
        pg = node.pg
        if isinstance(action, a.InitDb):
            pg.state, pg.in_recovery, pg.was_primary = PgRunState.STOPPED, False, True
        elif isinstance(action, a.StartPostgres):
            pg.state, pg.in_recovery = PgRunState.RUNNING, not action.as_primary
            pg.upstream = action.upstream
            if action.as_primary:
                self._assert_holds_key(node, "started read-write")
        elif isinstance(action, a.StopPostgres):
            pg.stop(clean=action.mode == "fast")
        elif isinstance(action, a.Promote):
            self._assert_holds_key(node, "promoted")
            pg.in_recovery, pg.upstream = False, None
            pg.timeline += 1
            node.checkpointed = True
            self.promotions += 1
        elif isinstance(action, a.FollowLeader):
            pg.upstream = action.leader
        elif isinstance(action, (a.Rewind, a.Clone)):
            source = next(n for n in self.nodes if n.name == action.source)
            pg.state, pg.in_recovery, pg.was_primary, pg.clean = (
                PgRunState.STOPPED,
                True,
                False,
                True,
            )
            pg.timeline, pg.position = source.pg.timeline, min(pg.position, source.pg.position)

    def _assert_holds_key(self, node: SimNode, what: str) -> None:
        leader = self.server._data.get("/pgha/sim/leader")
        held = (
            node.claim is not None
            and leader is not None
            and leader.value == node.name
            and leader.create_revision == node.claim.term
        )
        if not held:
            raise Violation(
                f"{node.name} {what} without holding the key:\n" + "\n".join(self.history[-30:])
            )


def heal_all(sim: ClusterSim) -> None:
    for index, node in enumerate(sim.nodes):
        node.frozen = False
        node.store.reachable = True
        if not node.alive:
            sim.nodes[index] = replace(SimNode(node.name, node.store, pg=node.pg))
