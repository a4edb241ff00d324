"""`pgha switchover`: check, ask, write the request to etcd, then print each phase.

The CLI never acts on a node: it writes the `switchover` key and watches the cluster move
(the leader's rules do the work, pgha/core/rules_switchover.py). Phases, in order:
checks passed on the leader -> writes stopped on the old primary at LSN C -> the candidate
replayed C and was promoted in term N -> the old primary follows it. It ends with done,
failed (and why), or a timeout that says what was last seen, never "status unknown".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pgha.adapters.store import SWITCHOVER, ClusterSnapshot, Record
from pgha.agent.cluster_view import parse_cluster
from pgha.agent.switchover_record import iso_time, parse_time
from pgha.cli_status import read_snapshot
from pgha.cli_target import ClusterTarget
from pgha.core.model import ClusterView, Policy, SwitchoverState, format_lsn
from pgha.core.rules_switchover import switchover_candidate
from pgha.errors import PghaError

EXIT_REFUSED = 1
EXIT_ETCD_UNREACHABLE = 2
POLL_SECONDS = 0.1
Echo = Callable[..., Any]
Confirm = Callable[[str], bool]


@dataclass
class Request:
    leader: str
    candidate: str | None
    """None: the best eligible replica when the leader serves it."""
    best_now: str
    at: float | None


def request_switchover(
    target: ClusterTarget,
    *,
    candidate: str | None,
    at_text: str | None,
    confirm: Confirm,
    echo: Echo,
    timeout: float,
) -> int:
    """The whole command; returns its exit code."""
    snapshot = read_snapshot(target, echo)
    if snapshot is None:
        return EXIT_ETCD_UNREACHABLE
    try:
        at = parse_time(at_text) if at_text is not None else None
        checked = check_preconditions(snapshot, candidate, at)
    except ValueError as exc:
        echo(f"switchover refused: {exc}", err=True)
        return EXIT_REFUSED
    when = f" at {iso_time(checked.at)}" if checked.at is not None else ""
    shown = checked.candidate or f"the best replica (now {checked.best_now})"
    question = f"Switch over cluster {target.cluster!r}: primary {checked.leader} -> {shown}{when}?"
    if not confirm(question):
        echo("switchover cancelled: nothing was written")
        return EXIT_REFUSED
    written = _write(target, snapshot, checked)
    if written is None:
        echo(
            "switchover refused: another switchover request was written meanwhile; "
            "see `pgha status`",
            err=True,
        )
        return EXIT_REFUSED
    if checked.at is not None and checked.at > time.time():
        echo(
            f"switchover {written} scheduled for {iso_time(checked.at)}: whichever node leads "
            "then runs it; `pgha switchover --cancel` cancels it"
        )
        return 0
    echo(f"checks passed: {checked.leader} -> {shown} (request {written})")
    return follow_phases(target, written, checked.leader, timeout, echo)


def check_preconditions(
    snapshot: ClusterSnapshot, candidate: str | None, at: float | None
) -> Request:
    """What must hold before a request is written; ValueError says what does not."""
    parsed = parse_cluster(snapshot, Policy())
    view = parsed.view
    if view.leader is None:
        raise ValueError(
            "the cluster has no leader; a switchover needs one (for a forced promotion use "
            "`pgha failover --candidate NAME`)"
        )
    if view.paused:
        raise ValueError("the cluster is paused (maintenance mode): `pgha resume` first")
    pending = view.switchover
    if pending is not None and pending.open:
        raise ValueError(
            f"switchover {pending.id} is already {pending.state.value}; "
            "`pgha switchover --cancel` cancels a pending one"
        )
    leader = view.leader.holder
    chosen = switchover_candidate(view, leader, candidate, parsed.policy)
    if isinstance(chosen, str):
        raise ValueError(chosen)
    return Request(leader, candidate, chosen.name, at)


def _write(target: ClusterTarget, snapshot: ClusterSnapshot, checked: Request) -> str | None:
    """Write the request; only over no request or a finished one (a compare on its revision)."""
    previous = snapshot.get(SWITCHOVER)
    expected = previous.mod_revision if previous is not None else 0
    request_id = uuid.uuid4().hex[:8]
    record = {
        "id": request_id,
        "from": checked.leader,
        "to": checked.candidate,
        "at": iso_time(checked.at),
        "state": SwitchoverState.PENDING.value,
        "requested_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not target.store.put(SWITCHOVER, record, expected_mod_revision=expected):
        return None
    return request_id


def cancel_switchover(target: ClusterTarget, echo: Echo) -> int:
    snapshot = read_snapshot(target, echo)
    if snapshot is None:
        return EXIT_ETCD_UNREACHABLE
    value = snapshot.get(SWITCHOVER)
    request = parse_cluster(snapshot, Policy()).view.switchover
    if value is None or request is None or not request.open:
        echo("no switchover is pending: nothing to cancel", err=True)
        return EXIT_REFUSED
    if request.state is SwitchoverState.HANDING_OVER:
        echo(
            f"switchover {request.id} is already handing over to {request.candidate}: too late "
            "to cancel",
            err=True,
        )
        return EXIT_REFUSED
    if not target.store.delete(SWITCHOVER, expected_mod_revision=value.mod_revision):
        echo("the request changed while cancelling it; see `pgha status`", err=True)
        return EXIT_REFUSED
    echo(f"switchover {request.id} cancelled")
    return 0


@dataclass
class PhaseWatcher:
    """Prints each phase once, in order, as the snapshots show it happening."""

    request_id: str
    old_primary: str
    echo: Echo
    printed: set[str] = field(default_factory=set)
    candidate: str | None = None
    last_seen: str = "the request is written; the leader has not picked it up yet"

    def say(self, phase: str, text: str) -> None:
        if phase not in self.printed:
            self.printed.add(phase)
            self.echo(text)
            self.last_seen = text

    def step(self, view: ClusterView, snapshot: ClusterSnapshot) -> int | None:
        """The exit code once the switchover ended, None while it runs."""
        request = view.switchover
        if request is not None and request.id != self.request_id:
            request = None
        if request is not None:
            if request.candidate is not None:
                self.candidate = request.candidate
            if request.state is SwitchoverState.FAILED:
                self.echo(f"switchover failed: {_reason(snapshot) or 'no reason given'}")
                return EXIT_REFUSED
            if request.state is SwitchoverState.HANDING_OVER:
                self.say("checks", f"leader {self.old_primary}: handing over to {self.candidate}")
        elif "checks" not in self.printed and "promoted" not in self.printed:
            self.echo("switchover request was cancelled or replaced; see `pgha status`")
            return EXIT_REFUSED
        handoff = view.handoff
        if handoff is not None and handoff.from_node == self.old_primary:
            self.candidate = handoff.to_node or self.candidate
            self.say(
                "stopped",
                f"writes stopped on {self.old_primary} at {format_lsn(handoff.final_lsn)}",
            )
        leader = view.leader
        if leader is not None and self.candidate and leader.holder == self.candidate:
            self.say(
                "promoted",
                f"{self.candidate} replayed past the final LSN and was promoted, term "
                f"{leader.term}",
            )
            old = view.members.get(self.old_primary)
            if old is not None and old.running and old.upstream == self.candidate:
                self.say("following", f"{self.old_primary} follows {self.candidate}")
        if "following" in self.printed and request and request.state is SwitchoverState.DONE:
            return 0
        return None


def _reason(snapshot: ClusterSnapshot) -> str | None:
    value = snapshot.get(SWITCHOVER)
    if isinstance(value, Record) and isinstance(value.data, dict):
        reason = value.data.get("reason")
        return reason if isinstance(reason, str) else None
    return None


def follow_phases(
    target: ClusterTarget, request_id: str, old_primary: str, timeout: float, echo: Echo
) -> int:
    watcher = PhaseWatcher(request_id, old_primary, echo)
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            snapshot = target.store.read_cluster()
        except PghaError as exc:  # a blip of etcd must not end the watch
            watcher.last_seen = f"etcd did not answer ({exc})"
            time.sleep(POLL_SECONDS)
            continue
        code = watcher.step(parse_cluster(snapshot, Policy()).view, snapshot)
        if code is not None:
            if code == 0:
                echo("switchover done")
            return code
        time.sleep(POLL_SECONDS)
    echo(
        f"switchover not finished after {timeout:g} s; last seen: {watcher.last_seen}. "
        "It may still complete: watch `pgha status`.",
        err=True,
    )
    return EXIT_REFUSED
