"""`pgha restart NAME` and `pgha reinit NAME`: ask one member's agent to act, through etcd.

The request goes into `requests/<member>` (only if no request is pending there); the
member's agent consumes it with a compare-and-delete before acting, so it runs at most
once, and answers in its member record (`request`: id, outcome, detail). The command waits
for that answer. A request nobody picked up before the timeout is withdrawn, so that it
cannot surprise anyone later (traps 18: no SSH, no agent API, every change through etcd).
"""

from __future__ import annotations

import getpass
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from pgha.adapters.store import REQUESTS, Record
from pgha.cli_ops import EXIT_REFUSED, Echo
from pgha.cli_status import read_snapshot
from pgha.cli_target import (
    EXIT_ETCD_UNREACHABLE,
    ClusterOption,
    ClusterTarget,
    EtcdOption,
    NamespaceOption,
    TargetConfigOption,
    open_target,
)
from pgha.errors import PghaError

POLL_SECONDS = 0.2
WHAT = {
    "restart": "restart Postgres on",
    "reinit": "move the data directory aside and re-clone from the leader",
}


def request_member_action(
    target: ClusterTarget,
    *,
    member: str,
    action: str,
    confirm: Callable[[str], bool],
    echo: Echo,
    timeout: float,
) -> int:
    snapshot = read_snapshot(target, echo)
    if snapshot is None:
        return EXIT_ETCD_UNREACHABLE
    if member not in snapshot.members:
        known = ", ".join(sorted(snapshot.members)) or "none"
        echo(f"{action} refused: no member named {member} (members: {known})", err=True)
        return EXIT_REFUSED
    if member in snapshot.requests:
        echo(
            f"{action} refused: a request for {member} is pending already; wait for it, or "
            f"remove it with etcdctl (key /{target.namespace}/{target.cluster}/{REQUESTS}{member})",
            err=True,
        )
        return EXIT_REFUSED
    leader = snapshot.leader.holder if snapshot.leader is not None else "nobody"
    question = (
        f"Cluster {target.cluster!r} (leader {leader}): {WHAT[action]} {member}"
        f"{' (the primary)' if member == leader else ''}?"
    )
    if not confirm(question):
        echo(f"{action} cancelled: nothing was written")
        return EXIT_REFUSED
    request_id = uuid.uuid4().hex[:12]
    record = {
        "id": request_id,
        "action": action,
        "by": f"{getpass.getuser()}@{socket.gethostname()}",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    key = REQUESTS + member
    if not target.store.put(key, record, expected_mod_revision=0):
        echo(f"{action} refused: another request for {member} arrived meanwhile", err=True)
        return EXIT_REFUSED
    echo(f"{action} of {member} requested ({request_id}); waiting for its agent")
    return _wait_for_answer(target, Pending(member, action, request_id), echo, timeout)


@dataclass(frozen=True)
class Pending:
    member: str
    action: str
    id: str

    @property
    def key(self) -> str:
        return REQUESTS + self.member


def _wait_for_answer(target: ClusterTarget, pending: Pending, echo: Echo, timeout: float) -> int:
    member, action = pending.member, pending.action
    give_up = time.monotonic() + timeout
    picked_up = False
    while time.monotonic() < give_up:
        try:
            snapshot = target.store.read_cluster()
        except PghaError:
            time.sleep(POLL_SECONDS)
            continue
        answer = _answer(snapshot.members.get(member), pending.id)
        if answer is not None:
            outcome, detail = answer
            if outcome == "done":
                echo(f"{action} of {member} done: {detail}")
                return 0
            echo(f"{action} of {member} {outcome}: {detail}", err=True)
            return EXIT_REFUSED
        if not picked_up and member not in snapshot.requests:
            picked_up = True
            echo(f"{member} picked the request up")
        time.sleep(POLL_SECONDS)
    if not picked_up and _withdraw(target, pending):
        echo(
            f"{action} of {member}: its agent did not pick the request up within {timeout:g} s "
            "(is it running? `pgha status`); the request was withdrawn",
            err=True,
        )
    else:
        echo(
            f"{action} of {member} is under way but not finished after {timeout:g} s; "
            "`pgha status` shows its state",
            err=True,
        )
    return EXIT_REFUSED


def _answer(value: Any, request_id: str) -> tuple[str, str] | None:
    """(outcome, detail) once the member record answers this request."""
    if not isinstance(value, Record) or not isinstance(value.data, dict):
        return None
    answer = value.data.get("request")
    if not isinstance(answer, dict) or answer.get("id") != request_id:
        return None
    outcome = answer.get("outcome")
    detail = answer.get("detail")
    if not isinstance(outcome, str):
        return None
    return outcome, detail if isinstance(detail, str) else ""


def _withdraw(target: ClusterTarget, pending: Pending) -> bool:
    """Delete our request if it is still there, untouched; True if it was withdrawn."""
    try:
        value = target.store.read_cluster().requests.get(pending.member)
        if not isinstance(value, Record) or not isinstance(value.data, dict):
            return False
        if value.data.get("id") != pending.id:
            return False
        return target.store.delete(pending.key, expected_mod_revision=value.mod_revision)
    except PghaError:
        return False


def _ask(question: str) -> bool:
    return typer.confirm(question, default=False)


YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def restart(
    member: Annotated[str, typer.Argument(help="The member whose Postgres to restart.")],
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
    yes: YesOption = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait.")] = 120,
) -> None:
    """Restart one member's Postgres through its agent (the primary keeps the leader key).

    Works in maintenance mode too. Exit 0 once the agent reports it done, 1 if refused,
    failed or not finished in time.
    """
    target = open_target(config, etcd, cluster, namespace)
    _run(target, member=member, action="restart", yes=yes, timeout=timeout)


def reinit(
    member: Annotated[str, typer.Argument(help="The replica to re-clone.")],
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
    yes: YesOption = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait.")] = 3600,
) -> None:
    """Re-clone a replica from the leader with pg_basebackup.

    Its data directory is moved aside, never deleted. The leader itself is refused:
    switch over first.
    """
    target = open_target(config, etcd, cluster, namespace)
    _run(target, member=member, action="reinit", yes=yes, timeout=timeout)


def _run(target: ClusterTarget, *, member: str, action: str, yes: bool, timeout: float) -> None:
    try:
        code = request_member_action(
            target,
            member=member,
            action=action,
            confirm=(lambda question: True) if yes else _ask,
            echo=typer.echo,
            timeout=timeout,
        )
    finally:
        target.store.close()
    raise typer.Exit(code=code)


def register_request_commands(app: typer.Typer) -> None:
    app.command()(restart)
    app.command()(reinit)
