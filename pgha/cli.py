"""The `pgha` command line: the agent and the operator's commands.

Every command reads the same configuration file as the agent (`--config`, or the
PGHA_CONFIG environment variable) and talks to etcd directly; none needs SSH or the
agent's API. The read-only ones (`status`, `dsn`) also take `--etcd URL[,URL]`,
`--cluster` and `--namespace` instead, for an ops shell without an agent's file.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import yaml

from pgha import __version__
from pgha.agent.loop import Agent
from pgha.api.server import ApiUnavailable
from pgha.cli_ops import request_failover, set_config, set_paused, show_config, show_history
from pgha.cli_status import print_dsn, show_status, watch_status
from pgha.cli_switchover import cancel_switchover, request_switchover
from pgha.cli_target import (
    ClusterOption,
    ClusterTarget,
    EtcdOption,
    NamespaceOption,
    TargetConfigOption,
    open_target,
)
from pgha.demo import Demo
from pgha.dsn import DEFAULT_CONNECT_TIMEOUT_SECONDS, SessionTarget
from pgha.errors import ConfigError, PghaError
from pgha.settings import Settings, load_settings, masked, unreadable_files

app = typer.Typer(
    name="pgha",
    help="PostgreSQL high availability: one agent per host, agreeing through etcd.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and validate configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="PGHA_CONFIG",
        help="The agent's YAML configuration file.",
        dir_okay=False,
    ),
]


@config_app.command("check")
def config_check(config: ConfigOption = Path("/etc/pgha/pgha.yml")) -> None:
    """Load and validate a configuration file; print the effective settings, secrets masked.

    Exits 0 when the file is usable, 1 with one line per problem otherwise (including
    password and certificate files this user cannot read).
    """
    settings = _load_or_exit(config)
    problems = unreadable_files(settings)
    for problem in problems:
        typer.echo(f"{config}: {problem}", err=True)
    if problems:
        raise typer.Exit(code=1)
    for warning in configuration_warnings(settings):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(yaml.safe_dump(masked(settings), sort_keys=False).rstrip())


def configuration_warnings(settings: Settings) -> list[str]:
    """Problems that do not stop the agent but that an operator should hear about."""
    warnings = []
    superuser = settings.postgres.superuser.username
    for line in settings.postgres.pg_hba:
        fields = line.split()
        open_to_all = any(f in ("0.0.0.0/0", "::/0", "all") for f in fields[3:4])
        if open_to_all and len(fields) > 2 and fields[2] in (superuser, "all"):
            warnings.append(
                f"postgres.pg_hba: {line!r} lets the superuser {superuser!r} connect from "
                "anywhere; restrict it to the network of the cluster"
            )
    return warnings


def _load_or_exit(config: Path) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(code=1) from None


@app.command()
def agent(config: ConfigOption = Path("/etc/pgha/pgha.yml")) -> None:
    """Run the HA agent for this node until SIGTERM (then stop Postgres cleanly and hand over)."""
    settings = _load_or_exit(config)
    setup_logging()
    try:
        Agent(settings).run()
    except ApiUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Working directory for etcd, Postgres and logs.")
    ] = Path("demo"),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a healthy cluster.")] = 180,
    exit_when_healthy: Annotated[
        bool, typer.Option("--exit-when-healthy", help="Stop again once healthy (for tests).")
    ] = False,
) -> None:
    """Start etcd and three agents on this machine; they bootstrap a cluster. Ctrl-C stops it."""
    setup_logging()
    cluster = Demo(directory, typer.echo)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        cluster.start()
        typer.echo("waiting for the agents to bootstrap the cluster...")
        snapshot = cluster.wait_until_healthy(timeout)
        typer.echo(cluster.status(snapshot))
        typer.echo(f"\nconnect to the primary, wherever it is:\n  {cluster.connect_hint()}")
        typer.echo(f"status: pgha status --config {directory / 'pg1.yml'}")
        if not exit_when_healthy:
            typer.echo("Ctrl-C stops the demo")
            stop.wait()
    except PghaError as exc:
        typer.echo(f"demo failed: {exc}", err=True)
        raise typer.Exit(code=1) from None
    finally:
        cluster.stop()


@app.command()
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


@app.command()
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


@app.command()
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


@config_app.command("show")
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


@config_app.command("set")
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


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
def history(
    *,
    config: TargetConfigOption = None,
    etcd: EtcdOption = None,
    cluster: ClusterOption = None,
    namespace: NamespaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The entries as JSON.")] = False,
) -> None:
    """Every promotion: time, term, timeline, LSN, new primary and why."""

    def command(target: ClusterTarget) -> int:
        return show_history(target, as_json, typer.echo)

    run_on_cluster(open_target(config, etcd, cluster, namespace), command)


@app.command()
def version() -> None:
    """Print pgha's version."""
    typer.echo(f"pgha {__version__}")


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # APScheduler reports each tick skipped while a long cycle runs; that is by design.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
