"""The `pgha` command line: the agent and the operator's commands.

Every command reads the same configuration file as the agent (`--config`, or the
PGHA_CONFIG environment variable) and talks to etcd directly; none needs SSH or the
agent's API.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from pgha.agent.guard import Guard
from pgha.agent.loop import Agent
from pgha.errors import ConfigError
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
    Agent(settings).run()


@app.command(hidden=True)
def guard(
    data_dir: Annotated[Path, typer.Option("--data-dir")],
    deadline_file: Annotated[Path, typer.Option("--deadline-file")],
    poll: Annotated[float, typer.Option("--poll")] = 0.5,
) -> None:
    """Fence Postgres when the agent's fencing deadline passes (the agent starts this)."""
    setup_logging()
    Guard(data_dir, deadline_file, poll).run()


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
