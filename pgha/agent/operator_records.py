"""The executor's writes of operator-facing records: the switchover request, the forced
failover, the `sync` key, and operator requests to this member (consumed and answered).

Each is a small compare-and-set as leader (or on the request's revision), so a write
made on a stale view fails instead of overwriting someone else's change.
"""

from __future__ import annotations

from pgha.adapters.store import FAILOVER, REQUESTS, SWITCHOVER, SYNC, ClusterStore
from pgha.agent.outcome import ActionFailed, Outcome
from pgha.agent.runtime import Runtime
from pgha.agent.switchover_record import iso_time
from pgha.core import actions as a
from pgha.core.model import ClusterView


class RecordWriter:
    def __init__(self, store: ClusterStore, runtime: Runtime) -> None:
        self.store = store
        self.runtime = runtime

    def answer_request(self, outcomes: list[Outcome]) -> None:
        """Say in the member record how a consumed operator request ended."""
        consumed = [o for o in outcomes if isinstance(o.action, a.ConsumeRequest) and o.ok]
        if not consumed:
            return
        request = consumed[0].action
        assert isinstance(request, a.ConsumeRequest)
        failed = next((o for o in outcomes if not o.ok), None)
        if request.refused is not None:
            outcome, detail = "refused", request.refused
        elif failed is not None:
            outcome, detail = "failed", failed.describe()
        else:
            outcome, detail = "done", "; ".join(o.describe() for o in outcomes)
        self.runtime.last_request = {
            "id": request.request_id,
            "action": request.action,
            "outcome": outcome,
            "detail": detail,
        }

    def update_switchover(self, action: a.UpdateSwitchover, view: ClusterView | None) -> str:
        runtime = self.runtime
        request = view.switchover if view is not None else None
        if runtime.claim is None or request is None:
            raise ActionFailed("no switchover request or no claim: nothing to update")
        record = {
            "id": request.id,
            "from": request.from_node,
            "to": request.to_node,
            "at": iso_time(request.at),
            "state": action.state,
            "candidate": action.candidate or request.candidate,
            "term": runtime.claim.term if action.state == "handing_over" else request.term,
            "reason": action.reason,
            "leader_term": runtime.claim.term,
        }
        written = self.store.put(
            SWITCHOVER,
            record,
            expected_mod_revision=request.mod_revision,
            as_leader=runtime.claim,
        )
        if not written:
            raise ActionFailed("the switchover request changed meanwhile (cancelled?)")
        return action.state

    def clear_failover(self, action: a.ClearFailover, view: ClusterView | None) -> str:
        request = view.failover if view is not None else None
        if self.runtime.claim is None or request is None:
            raise ActionFailed("no failover request or no claim")
        self.store.delete(
            FAILOVER, expected_mod_revision=request.mod_revision, as_leader=self.runtime.claim
        )
        return "cleared"

    def update_sync(self, action: a.UpdateSync, view: ClusterView | None) -> str:
        claim = self.runtime.claim
        if claim is None:
            raise ActionFailed("no claim: only the leader writes the sync key")
        if action.standbys is None:
            if not self.store.delete(SYNC, as_leader=claim):
                raise ActionFailed("the leader key is no longer ours")
            return "deleted"
        record = {"leader": claim.name, "term": claim.term, "standbys": list(action.standbys)}
        if not self.store.put(SYNC, record, as_leader=claim):
            raise ActionFailed("the leader key is no longer ours")
        return "written"

    def consume_request(self, action: a.ConsumeRequest, view: ClusterView | None) -> str:
        request = view.requests.get(self.runtime.name) if view is not None else None
        if request is None or request.id != action.request_id:
            raise ActionFailed("the request is gone: withdrawn or already served")
        key = REQUESTS + self.runtime.name
        if not self.store.delete(key, expected_mod_revision=request.mod_revision):
            raise ActionFailed("the request changed or was consumed meanwhile")
        return "consumed"
