"""Operator commands that change the cluster through etcd: pause, resume, config show/set
and failover (`pgha history` is pgha/cli_history.py, `config edit` pgha/cli_config_edit.py).
Each write is a compare-and-set on the revision read, so two operators editing at once cannot
silently overwrite each other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pgha.adapters.store import CONFIG, FAILOVER, ClusterSnapshot, Unparsable
from pgha.agent.cluster_view import parse_cluster
from pgha.cli_status import read_snapshot
from pgha.cli_target import EXIT_ETCD_UNREACHABLE, ClusterTarget
from pgha.core.election import lag_seconds
from pgha.core.model import ClusterView, Policy
from pgha.dynamic_config import diff, parse_assignment, validate
from pgha.errors import PghaError

EXIT_REFUSED = 1
Echo = Callable[..., Any]


def config_of(snapshot: ClusterSnapshot) -> tuple[dict[str, Any], int] | str:
    """The config and its mod_revision (0: absent), or why it cannot be edited."""
    value = snapshot.get(CONFIG)
    if value is None:
        return {}, 0
    if isinstance(value, Unparsable):
        return f"the config key is unreadable ({value.error}); fix it with etcdctl first"
    if not isinstance(value.data, dict):
        return "the config key is not a JSON object; fix it with etcdctl first"
    return dict(value.data), value.mod_revision


def read_config(target: ClusterTarget, echo: Echo) -> tuple[dict[str, Any], int] | int:
    """The config and its mod_revision to edit, or the exit code after saying why not."""
    snapshot = read_snapshot(target, echo)
    if snapshot is None:
        return EXIT_ETCD_UNREACHABLE
    current = config_of(snapshot)
    if isinstance(current, str):
        echo(f"config not changed: {current}", err=True)
        return EXIT_REFUSED
    return current


def set_config(target: ClusterTarget, assignments: list[str], echo: Echo) -> int:
    """Validate KEY=VALUE pairs against the whole resulting config, show the diff, write."""
    try:
        changes = dict(parse_assignment(text) for text in assignments)
    except ValueError as exc:
        echo(f"config not changed: {exc}", err=True)
        return EXIT_REFUSED
    if not changes:
        echo("config not changed: give at least one KEY=VALUE", err=True)
        return EXIT_REFUSED
    current = read_config(target, echo)
    if isinstance(current, int):
        return current
    before, revision = current
    after = {**before, **changes}
    try:
        validate(after)
    except ValueError as exc:
        echo(f"config not changed: {exc}", err=True)
        return EXIT_REFUSED
    lines = diff(before, after)
    if not lines:
        echo("config unchanged: it already holds these values")
        return 0
    if not target.store.put(CONFIG, after, expected_mod_revision=revision):
        echo("config not changed: someone changed it meanwhile; run the command again", err=True)
        return EXIT_REFUSED
    for line in lines:
        echo(line)
    return 0


def show_config(target: ClusterTarget, echo: Echo) -> int:
    snapshot = read_snapshot(target, echo)
    if snapshot is None:
        return EXIT_ETCD_UNREACHABLE
    current = config_of(snapshot)
    if isinstance(current, str):
        echo(current, err=True)
        return EXIT_REFUSED
    echo(json.dumps(current[0], indent=2, sort_keys=True))
    return 0


def set_paused(target: ClusterTarget, paused: bool, echo: Echo) -> int:
    word = "paused" if paused else "resumed"
    code = set_config(target, [f"paused={str(paused).lower()}"], lambda *a, **k: None)
    if code == 0:
        echo(
            f"cluster {target.cluster!r} {word}: "
            + (
                "agents keep their roles and change nothing (fencing still works)"
                if paused
                else "agents fail over and repair again"
            )
        )
    else:
        echo(f"could not mark the cluster {word}; see `pgha config show`", err=True)
    return code


def request_failover(
    target: ClusterTarget,
    *,
    candidate: str,
    allow_data_loss: bool,
    confirm: Callable[[str], bool],
    echo: Echo,
    timeout: float,
) -> int:
    """Name the next leader of a leaderless cluster, then wait until it leads."""
    snapshot = read_snapshot(target, echo)
    if snapshot is None:
        return EXIT_ETCD_UNREACHABLE
    parsed = parse_cluster(snapshot, Policy())
    view = parsed.view
    why = _failover_refusal(view, parsed.policy, candidate, allow_data_loss)
    if why is not None:
        echo(f"failover refused: {why}", err=True)
        return EXIT_REFUSED
    loss = " ACCEPTING DATA LOSS" if allow_data_loss else ""
    if not confirm(f"Promote {candidate} in leaderless cluster {target.cluster!r}{loss}?"):
        echo("failover cancelled: nothing was written")
        return EXIT_REFUSED
    record = {
        "to": candidate,
        "allow_data_loss": allow_data_loss,
        "requested_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    previous = snapshot.get(FAILOVER)
    expected = previous.mod_revision if previous is not None else 0
    if not target.store.put(FAILOVER, record, expected_mod_revision=expected):
        echo("failover refused: the failover request changed meanwhile; try again", err=True)
        return EXIT_REFUSED
    echo(f"failover requested: {candidate} may take the key")
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            leader = target.store.read_cluster().leader
        except PghaError:
            leader = None
        if leader is not None:
            if leader.holder == candidate:
                echo(f"{candidate} promoted, term {leader.term}")
                return 0
            echo(f"failover failed: {leader.holder} took the key (term {leader.term})", err=True)
            return EXIT_REFUSED
        time.sleep(0.2)
    echo(
        f"{candidate} has not taken the key after {timeout:g} s; its member record says why "
        "(`pgha status`); the request stays until a leader serves it",
        err=True,
    )
    return EXIT_REFUSED


def _failover_refusal(
    view: ClusterView, policy: Policy, candidate: str, allow_data_loss: bool
) -> str | None:
    if view.leader is not None:
        return (
            f"{view.leader.holder} leads (term {view.leader.term}); a planned handover is "
            f"`pgha switchover --candidate {candidate}`"
        )
    member = view.members.get(candidate)
    if member is None:
        return f"no member named {candidate} (members: {', '.join(sorted(view.members))})"
    never = member.tags.never_promoted
    if never is not None:
        return f"{candidate} is {never}"
    if not member.running or not member.in_recovery:
        return f"{candidate} is not a running replica (role {member.role})"
    base, position = view.last_primary_position, member.position
    if base is not None and position is not None and not allow_data_loss:
        lag = base - position
        if lag > policy.maximum_lag_on_failover_bytes:
            return (
                f"{candidate} is {lag} bytes behind the last primary position, more than "
                f"maximum_lag_on_failover ({policy.maximum_lag_on_failover_bytes}); "
                "--allow-data-loss promotes it anyway, losing those writes"
            )
    late = lag_seconds(view, member.heartbeat_replayed_at)
    limit = policy.maximum_lag_seconds_on_failover
    if late is not None and 0 < limit < late and not allow_data_loss:
        return (
            f"{candidate} is {late:.1f} s behind the last heartbeat the primary published, "
            f"more than maximum_lag_seconds_on_failover ({limit:g} s); --allow-data-loss "
            "promotes it anyway, losing those writes"
        )
    return None
