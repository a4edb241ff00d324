"""The `pgha` command line: the agent and the operator's commands.

Every command reads the same configuration file as the agent (`--config`, or the
PGHA_CONFIG environment variable) and talks to etcd directly; none needs SSH or the
agent's API. The read-only ones (`status`, `dsn`) also take `--etcd URL[,URL]`,
`--cluster` and `--namespace` instead, for an ops shell without an agent's file.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from typer._click.exceptions import UsageError  # typer 0.29 keeps its own click; pinned
from typer.core import TyperGroup

from pgha import __version__
from pgha.agent.slots import slot_name_problem
from pgha.api.auth import exposure_warnings
from pgha.cli_cluster import register_cluster_commands
from pgha.cli_requests import register_request_commands
from pgha.cli_target import EXIT_BAD_TARGET
from pgha.demo import Demo
from pgha.entry import run_agent, setup_logging
from pgha.errors import ConfigError, PghaError
from pgha.settings import Settings, unreadable_files
from pgha.settings_load import load_settings, masked
from pgha.tls_files import ca_warnings, certificate_problems


@contextmanager
def _usage_errors_exit_bad_options() -> Iterator[None]:
    try:
        yield
    except UsageError as exc:
        exc.exit_code = EXIT_BAD_TARGET  # on this error, not on the class
        raise


class PghaGroup(TyperGroup):
    """typer's group, but a usage error (unknown option, bad value, missing argument) in any
    command exits EXIT_BAD_TARGET (3), like bad options pgha itself finds, never click's 2,
    which pgha's commands use for "etcd unreachable". typer still prints it; the whole
    command line is parsed and run within these two methods."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _usage_errors_exit_bad_options():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors_exit_bad_options():
            return super().invoke(ctx)


app = typer.Typer(
    cls=PghaGroup,
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
    password and certificate files this user cannot read, CA files that hold no certificate,
    and certificates that do not match their key).
    """
    settings = _load_or_exit(config)
    problems = unreadable_files(settings) + certificate_problems(settings)
    # Another member's name is not known here: the agents refuse colliding slots.
    slot_problem = slot_name_problem(settings.node)
    problems += [slot_problem] if slot_problem else []
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
    if settings.postgres.rewind is None:
        warnings.append(
            "postgres.rewind is not set: pg_rewind connects as the superuser; give it a "
            "user of its own (username, password_file) and pgha grants it only what it needs"
        )
    warnings.extend(exposure_warnings(settings.api))
    warnings.extend(ca_warnings(settings))
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
    # Only the forms pgha/entry.py does not take itself get here: --help, odd spellings.
    status = run_agent(config)
    if status:
        raise typer.Exit(code=status)


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


register_cluster_commands(app, config_app)
register_request_commands(app)


@app.command()
def version() -> None:
    """Print pgha's version."""
    typer.echo(f"pgha {__version__}")


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
