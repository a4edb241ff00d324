"""SIGHUP (`systemctl reload pgha`): read this node's configuration file again and apply
what may change while the agent runs.

That is the tags (`nofailover`, `failover_priority`, `noloadbalance`, `nosync`): they
change how the cluster treats this node, not how the agent talks to etcd or Postgres, and
they take effect from the next cycle, which publishes them in the member record. Changing
a tag on the leader this way needs no restart, so no handoff. Every other setting is read
once, at start: a change to one is logged as waiting for a restart and the running value
stays. A file that does not load changes nothing; its problems are logged.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields, replace
from pathlib import Path

from pgha.adapters.settings_reload import load_settings_fresh
from pgha.errors import ConfigError
from pgha.settings import Settings

log = logging.getLogger("pgha.agent")


def reloaded_settings(running: Settings, config: Path) -> Settings:
    """The running settings with the tags of `config` as it reads now (the same object
    when nothing applies); logs one line per finding."""
    try:
        loaded = load_settings_fresh(config)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("reload: %s does not load, the running settings stay: %s", config, problem)
        return running
    waiting = [
        field.name
        for field in fields(Settings)
        if field.name != "tags" and getattr(loaded, field.name) != getattr(running, field.name)
    ]
    if waiting:
        log.warning(
            "reload: %s changed %s; that takes effect when the agent restarts, the running "
            "values stay until then",
            config,
            ", ".join(waiting),
        )
    if loaded.tags == running.tags:
        log.info("reload: %s read again; the tags are unchanged", config)
        return running
    log.info(
        "reload: tags %s -> %s, from the next cycle",
        _shown(running),
        _shown(loaded),
    )
    return replace(running, tags=loaded.tags)


def _shown(settings: Settings) -> str:
    return ", ".join(f"{name}={value}" for name, value in asdict(settings.tags).items())
