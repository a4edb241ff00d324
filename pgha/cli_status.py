"""`pgha status` and `pgha dsn`: read the cluster from etcd once (or every N seconds) and
print it. Both only read; exit codes are for scripts: 0 fine, 1 no leader (status) or no
member address (dsn), 2 etcd unreachable, 3 bad options or configuration.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pgha.adapters.store import ClusterSnapshot
from pgha.cli_target import EXIT_ETCD_UNREACHABLE, ClusterTarget
from pgha.dsn import multi_host_dsn
from pgha.errors import PghaError
from pgha.status import cluster_document, render_status

EXIT_NO_LEADER = 1
Echo = Callable[..., Any]


def read_snapshot(target: ClusterTarget, echo: Echo) -> ClusterSnapshot | None:
    """The cluster's snapshot, or None after saying on stderr why etcd could not give it."""
    try:
        return target.store.read_cluster()
    except PghaError as exc:
        tried = target.describe_endpoints()
        echo(f"cannot read cluster {target.cluster!r} from etcd (tried {tried}): {exc}", err=True)
        return None


def show_status(target: ClusterTarget, as_json: bool, echo: Echo, *, compact: bool = False) -> int:
    """Print the status once; the exit code: 0 with a leader, 1 without, 2 without etcd."""
    snapshot = read_snapshot(target, echo)
    if snapshot is None:
        return EXIT_ETCD_UNREACHABLE
    document = cluster_document(target.cluster, snapshot)
    if as_json:
        echo(json.dumps(document, indent=None if compact else 2, sort_keys=True))
    else:
        echo(render_status(document))
    return 0 if document["leader"] is not None else EXIT_NO_LEADER


def watch_status(target: ClusterTarget, as_json: bool, interval: float, echo: Echo) -> int:
    """Refresh every `interval` seconds until Ctrl-C; returns the last refresh's exit code.
    JSON comes one document per line, for a consumer that reads a stream."""
    code = EXIT_ETCD_UNREACHABLE
    clear = not as_json and sys.stdout.isatty()
    # Ctrl-C sets a flag rather than raising KeyboardInterrupt wherever the interpreter
    # happens to be (inside an HTTP request to etcd, it could be swallowed or leave the
    # connection pool half torn down): the refresh under way finishes, then the loop ends.
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        while not stop.is_set():
            if clear:
                echo("\033[H\033[2J", nl=False)
            if not as_json:
                echo(f"{time.strftime('%H:%M:%S')}, every {interval:g} s; Ctrl-C stops")
            code = show_status(target, as_json, echo, compact=True)
            stop.wait(interval)
    finally:
        signal.signal(signal.SIGINT, previous)
    return code


def member_addresses(document: dict[str, Any], *, replicas_only: bool) -> list[tuple[str, int]]:
    """Every member's published Postgres address, the leader first (libpq tries them in
    order); without the leader when `replicas_only`."""
    leader = document["leader"]
    members = sorted(document["members"], key=lambda member: member["name"] != leader)
    return [
        (member["host"], member["port"])
        for member in members
        if member["host"] and member["port"] and not (replicas_only and member["name"] == leader)
    ]


def print_dsn(
    target: ClusterTarget,
    *,
    replicas_only: bool,
    mode: str | None,
    connect_timeout: int,
    dbname: str | None,
    user: str | None,
    echo: Echo,
) -> int:
    snapshot = read_snapshot(target, echo)
    if snapshot is None:
        return EXIT_ETCD_UNREACHABLE
    document = cluster_document(target.cluster, snapshot)
    addresses = member_addresses(document, replicas_only=replicas_only)
    if not addresses:
        which = "replica" if replicas_only else "member"
        echo(f"cluster {target.cluster!r}: no {which} has published an address", err=True)
        return 1
    dsn = multi_host_dsn(
        addresses,
        target=mode or ("read-only" if replicas_only else "read-write"),
        connect_timeout_seconds=connect_timeout,
        dbname=dbname,
        user=user,
    )
    echo(dsn)
    return 0
