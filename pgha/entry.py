"""The `pgha` console script: `pgha agent` straight to the agent, everything else to typer.

The agent runs for months and its resident memory is what every host pays for it, so the
plain `pgha agent [--config FILE]` command line, the one systemd runs, is read here without
loading the command-line framework and the operator commands (typer, the cli_* modules):
about 1.5 MiB less for the agent's whole life. Its settings are loaded in a short-lived
child (`pgha.settings_handoff`), which keeps pydantic out of it too. Any other form of it
(`--help`, an unknown option, a directory given as the file) goes to the full command
line, which says what is wrong exactly as it does for every other command. Both paths run
the agent the same way (`run_agent`).

This module must not import typer or pgha.cli at the top: that is the point of it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pgha.agent.loop import Agent
from pgha.api.server import ApiUnavailable
from pgha.errors import ConfigError
from pgha.settings_handoff import load_settings_apart

DEFAULT_CONFIG = Path("/etc/pgha/pgha.yml")
CONFIG_ENVIRONMENT = "PGHA_CONFIG"
CONFIG_OPTIONS = ("--config", "-c")


def agent_config(argv: Sequence[str], environ: Mapping[str, str]) -> Path | None:
    """The configuration file of a plain `agent [--config FILE]` command line (the option,
    else PGHA_CONFIG, else the default, as `pgha agent --help` documents); None for any
    other command line, which the full one handles."""
    if not argv or argv[0] != "agent":
        return None
    options = list(argv[1:])
    # An empty PGHA_CONFIG counts as unset, as for the full command line.
    config = environ.get(CONFIG_ENVIRONMENT) or str(DEFAULT_CONFIG)
    if len(options) == 2 and options[0] in CONFIG_OPTIONS:
        config = options[1]
    elif len(options) == 1 and options[0].startswith("--config="):
        config = options[0].removeprefix("--config=")
    elif options:
        return None
    if not config or config.startswith("-") or Path(config).is_dir():
        return None  # the full command line explains what is wrong with it
    return Path(config)


def run_agent(config: Path) -> int:
    """Run the HA agent for this node until SIGTERM; returns the exit status."""
    try:
        settings = load_settings_apart(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    setup_logging()
    try:
        Agent(settings, config).run()
    except ApiUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


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
    config = agent_config(sys.argv[1:], os.environ)
    if config is not None:
        sys.exit(run_agent(config))
    from pgha.cli import main as full_command_line  # noqa: PLC0415 - not for the agent

    full_command_line()
