"""The operator's commands that act on a whole cluster through etcd: status, dsn,
switchover, failover, pause, resume, history, config show/set/edit.

Each takes the cluster from an agent's config file or from `--etcd/--cluster/--namespace`
(pgha/cli_target.py), runs against one store, and exits with the command's code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from pgha.cli_config_edit import edit_config
from pgha.cli_history import show_history
from pgha.cli_ops import request_failover, set_config, set_paused, show_config
from pgha.cli_status import print_dsn, show_status, watch_status
from pgha.cli_switchover import cancel_switchover, request_switchover
from pgha.cli_target import (
    EXIT_BAD_TARGET,
    ClusterOption,
    ClusterTarget,
    EtcdOption,
    NamespaceOption,
    TargetConfigOption,
    open_target,
)
from pgha.dsn import DEFAULT_CONNECT_TIMEOUT_SECONDS, SessionTarget
from pgha.history_summary import parse_duration


def status(
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    watch: Annotated[
        float | None,
        typer.Option("--watch", "-w", min=0.2, help="Refresh every N seconds until Ctrl-C."),
    ] = None,
) -> None:
    """Show the members, the leader, its term, pause and any pending switchover.

    Per member: role, state, timeline, LSN, lag, tags and the last decision.

    Exit 0 with a leader, 1 without, 2 when etcd is unreachable, 3 on bad options.
    """

    def command(target: ClusterTarget) -> int:
        if watch is None:
            return show_status(target, as_json, typer.echo)
        return watch_status(target, as_json, watch, typer.echo)

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


def dsn(
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
    replicas: Annotated[
        bool, typer.Option("--replicas", help="Only the replicas (default mode read-only).")
    ] = False,
    mode: Annotated[
        SessionTarget | None,
        typer.Option(
            "--mode",
            help="target_session_attrs (default read-write, or read-only with --replicas).",
        ),
    ] = None,
    connect_timeout: Annotated[
        int, typer.Option("--connect-timeout", min=1, help="Seconds per host before the next.")
    ] = DEFAULT_CONNECT_TIMEOUT_SECONDS,
    dbname: Annotated[str | None, typer.Option("--dbname")] = None,
    user: Annotated[str | None, typer.Option("--user")] = None,
) -> None:
    """Print a libpq multi-host connection string for the cluster (no password in it).

    Exit 1 when no member has published an address, 2 when etcd is unreachable.
    """

    def command(target: ClusterTarget) -> int:
        return print_dsn(
            target,
            replicas_only=replicas,
            mode=mode.value if mode is not None else None,
            connect_timeout=connect_timeout,
            dbname=dbname,
            user=user,
            echo=typer.echo,
        )

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


def switchover(
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
    candidate: Annotated[
        str | None,
        typer.Option("--candidate", help="The replica to promote (default: the best one)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Run it at this ISO 8601 time with a zone, not now."),
    ] = None,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Cancel a pending (scheduled) switchover.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to follow the phases.")
    ] = 60,
) -> None:
    """Hand the primary role to a replica, losing no acknowledged write.

    Prints each phase as it happens. Exit 0 when done, 1 when refused or failed, 2 when
    etcd is unreachable.
    """

    def command(target: ClusterTarget) -> int:
        if cancel:
            return cancel_switchover(target, typer.echo)
        return request_switchover(
            target,
            candidate=candidate,
            at_text=at,
            confirm=(lambda question: True) if yes else _ask,
            echo=typer.echo,
            timeout=timeout,
        )

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


def run_on_cluster(target: ClusterTarget, command: Callable[[ClusterTarget], int]) -> None:
    """Run an operator command against the cluster, close the store, exit with its code."""
    try:
        code = command(target)
    finally:
        target.store.close()
    raise typer.Exit(code=code)


def _ask(question: str) -> bool:
    return typer.confirm(question, default=False)


def config_show(
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Print the cluster's dynamic configuration (the `config` key in etcd) as JSON."""

    def command(target: ClusterTarget) -> int:
        return show_config(target, typer.echo)

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


def config_set(
    assignments: Annotated[list[str], typer.Argument(help="KEY=VALUE pairs, e.g. ttl=20")],
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Change the dynamic configuration (KEY=VALUE ...), validated, shown as a diff.

    The timers are checked together (a leader must keep room to fence); the write happens
    only if nobody changed the config meanwhile.
    """

    def command(target: ClusterTarget) -> int:
        return set_config(target, assignments, typer.echo)

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


def config_edit(
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Edit the dynamic configuration as YAML in $VISUAL or $EDITOR, checked like `config set`.

    Shows the diff and writes only if nobody changed the config meanwhile. When nothing is
    written, the edited file is kept and its path printed.
    """

    def command(target: ClusterTarget) -> int:
        return edit_config(
            target, confirm=(lambda question: True) if yes else _ask, echo=typer.echo
        )

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


def failover(
    *,
    candidate: Annotated[str, typer.Option("--candidate", help="The replica to promote.")],
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
    allow_data_loss: Annotated[
        bool,
        typer.Option("--allow-data-loss", help="Promote it even if it lags past the limit."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait.")] = 60,
) -> None:
    """Promote a named replica of a cluster that has no leader.

    Refuses a lagging candidate unless --allow-data-loss. With a healthy leader, use
    `pgha switchover` instead.
    """

    def command(target: ClusterTarget) -> int:
        return request_failover(
            target,
            candidate=candidate,
            allow_data_loss=allow_data_loss,
            confirm=(lambda question: True) if yes else _ask,
            echo=typer.echo,
            timeout=timeout,
        )

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


def pause(
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Maintenance mode: the agents keep their roles and change nothing.

    No failover, restart, clone or rewind; a leader past its fencing deadline still stops
    writing.
    """

    def command(target: ClusterTarget) -> int:
        return set_paused(target, True, typer.echo)

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


def resume(
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Leave maintenance mode: the agents fail over and repair again."""

    def command(target: ClusterTarget) -> int:
        return set_paused(target, False, typer.echo)

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


def history(
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The entries as JSON.")] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only the last DURATION: 30d, 12h, 90m, 45s, 1d12h."),
    ] = None,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="Add availability, failovers, switchovers and write outage over the window.",
        ),
    ] = False,
) -> None:
    """Every promotion: time, term, timeline, LSN, new primary, kind, outage and why.

    The window of --summary runs from now - since to now, or without --since from the first
    promotion's outage. Exit 3 on a bad --since.
    """
    try:
        since_seconds = parse_duration(since) if since is not None else None
    except ValueError as exc:
        typer.echo(f"--since: {exc}", err=True)
        raise typer.Exit(code=EXIT_BAD_TARGET) from None

    def command(target: ClusterTarget) -> int:
        return show_history(
            target, as_json=as_json, since_seconds=since_seconds, summary=summary, echo=typer.echo
        )

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


def register_cluster_commands(app: typer.Typer, config_app: typer.Typer) -> None:
    """Add these commands to the `pgha` app and its `config` group, in help order."""
    app.command()(status)
    app.command()(dsn)
    app.command()(switchover)
    config_app.command("show")(config_show)
    config_app.command("set")(config_set)
    config_app.command("edit")(config_edit)
    app.command()(failover)
    app.command()(pause)
    app.command()(resume)
    app.command()(history)
