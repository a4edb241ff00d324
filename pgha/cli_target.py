"""Where an operator command finds its cluster: the agent's config file, or flags.

An ops shell often has no agent configuration (it needs a node name and a data directory),
so every read-only command also takes `--etcd URL[,URL]`, `--cluster` and `--namespace`.
With `--config` too, the file supplies what the flags do not (credentials, TLS, timeout)
and the flags win. Without either, /etc/pgha/pgha.yml is used if it exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from pgha.adapters.etcd_store import EtcdStore
from pgha.errors import ConfigError
from pgha.settings import Settings
from pgha.settings_base import split_address
from pgha.settings_load import load_settings

DEFAULT_CONFIG = Path("/etc/pgha/pgha.yml")
DEFAULT_ETCD_TIMEOUT_SECONDS = 2.0
EXIT_ETCD_UNREACHABLE = 2
"""Exit code of every command that could not reach etcd."""
EXIT_BAD_TARGET = 3
"""Exit code when the command cannot even start: bad options or configuration."""
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

TargetConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="PGHA_CONFIG",
        help="An agent's YAML configuration file (default /etc/pgha/pgha.yml).",
        dir_okay=False,
    ),
]
EtcdOption = Annotated[
    str | None,
    typer.Option(
        "--etcd",
        envvar="PGHA_ETCD",
        help="etcd endpoints, comma-separated (http://host:2379,...): no config file needed.",
    ),
]
ClusterOption = Annotated[
    str | None, typer.Option("--cluster", help="Cluster name (default: the file's, or main).")
]
NamespaceOption = Annotated[
    str | None,
    typer.Option("--namespace", help="Key namespace in etcd (default: the file's, or pgha)."),
]


@dataclass
class ClusterTarget:
    cluster: str
    namespace: str
    endpoints: list[str]
    store: EtcdStore

    def describe_endpoints(self) -> str:
        return ", ".join(self.endpoints)


def open_target(
    config: Path | None, etcd: str | None, cluster: str | None, namespace: str | None
) -> ClusterTarget:
    """The cluster the flags name, with a store on it; exits with EXIT_BAD_TARGET and one
    line per problem when the flags or the file are unusable."""
    try:
        return _open(config, etcd, cluster, namespace)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(code=EXIT_BAD_TARGET) from None


def _open(
    config: Path | None, etcd: str | None, cluster: str | None, namespace: str | None
) -> ClusterTarget:
    if config is None and etcd is None:
        if not DEFAULT_CONFIG.exists():
            given = "pass --etcd URL[,URL] (and --cluster), or --config FILE"
            raise ConfigError([f"no cluster given: {given} ({DEFAULT_CONFIG} does not exist)"])
        config = DEFAULT_CONFIG
    settings: Settings | None = load_settings(config) if config is not None else None
    endpoints = parse_endpoints(etcd) if etcd is not None else None
    if endpoints is None:
        assert settings is not None
        endpoints = list(settings.etcd.endpoints)
    name = cluster or (settings.cluster if settings is not None else "main")
    space = namespace or (settings.namespace if settings is not None else "pgha")
    for flag, value in (("--cluster", name), ("--namespace", space)):
        if not _NAME.match(value):
            raise ConfigError([f"{flag}: {value!r} is not a valid name (letters, digits, - _ .)"])
    prefix = f"/{space}/{name}/"
    if settings is None:
        store = EtcdStore(endpoints, prefix, timeout=DEFAULT_ETCD_TIMEOUT_SECONDS)
    else:
        auth = settings.etcd
        store = EtcdStore(
            endpoints,
            prefix,
            timeout=auth.timeout,
            username=auth.username,
            password=auth.secret(),
            ca_cert=auth.ca_cert,
            cert=auth.cert,
            key=auth.key,
        )
    return ClusterTarget(name, space, endpoints, store)


def parse_endpoints(text: str) -> list[str]:
    """'http://a:2379,https://b:2379' -> two URLs; ConfigError naming a malformed one."""
    endpoints = [part.strip().rstrip("/") for part in text.split(",") if part.strip()]
    if not endpoints:
        raise ConfigError(["--etcd: give at least one endpoint, like http://127.0.0.1:2379"])
    for url in endpoints:
        scheme, sep, rest = url.partition("://")
        try:
            if not sep or scheme not in ("http", "https"):
                raise ValueError("expected http://host:port or https://host:port")
            split_address(rest)
        except ValueError as exc:
            raise ConfigError([f"--etcd: {url!r}: {exc}"]) from None
    return endpoints
