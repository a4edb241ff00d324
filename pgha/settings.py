"""Local agent settings: one YAML file, overridden by `PGHA_`-prefixed environment variables.

Nested keys use `__` in the environment (`PGHA_POSTGRES__DATA_DIR`), lists are JSON
(`PGHA_ETCD__ENDPOINTS='["http://a:2379","http://b:2379"]'`). Unknown keys are errors, so a
typo never silently falls back to a default. The timers (ttl, loop_wait, retry_timeout,
safety_margin) only seed the cluster's dynamic configuration at bootstrap; afterwards the
copy in etcd is the one the agents follow.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pgha.settings_api import ApiSettings
from pgha.settings_base import (
    Address,
    Check,
    EtcdEndpoint,
    Limits,
    Name,
    Secret,
    Section,
    split_address,
)

GUARD_POLL_INTERVAL_SECONDS = 0.5
"""How late the guard may notice a passed deadline, at worst: it sleeps until the deadline
itself, so this is slack for a loaded host; safety_margin must cover it twice."""
GUARD_LONGEST_SLEEP_SECONDS = 2.0
"""The guard's longest sleep between two looks at the deadline file."""

Positive = Limits(gt=0)
NotNegative = Limits(ge=0)


@dataclass(frozen=True, kw_only=True)
class _PasswordSource(Section):
    """A password given inline, or in a file (never both); the environment can set either."""

    password: Secret | None = None
    password_file: Path | None = None

    def __post_init__(self) -> None:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")

    def secret(self) -> str | None:
        """The password itself, read from `password_file` when that is how it was given."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return None


@dataclass(frozen=True, kw_only=True)
class Credentials(_PasswordSource):
    """A database user and its password."""

    username: str


@dataclass(frozen=True, kw_only=True)
class EtcdSettings(_PasswordSource):
    endpoints: Annotated[list[EtcdEndpoint], Limits(min_length=1)] = field(
        default_factory=lambda: ["http://127.0.0.1:2379"]
    )
    username: str | None = None
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    timeout: Annotated[float, Positive] = 2.0
    """Seconds per etcd request."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together: give both or neither")
        has_password = self.password is not None or self.password_file is not None
        if has_password and self.username is None:
            raise ValueError("a password needs a username")


@dataclass(frozen=True, kw_only=True)
class PostgresSettings(Section):
    data_dir: Path
    bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    listen: Address = "127.0.0.1:5432"
    connect_address: Address = "127.0.0.1:5432"
    socket_dir: Path = Path("/run/postgresql")
    """The unix socket directory; never the data directory (pg_basebackup copies it)."""
    superuser: Credentials = field(default_factory=lambda: Credentials(username="postgres"))
    replication: Credentials = field(default_factory=lambda: Credentials(username="replicator"))
    rewind: Credentials | None = None
    """The user pg_rewind connects as: LOGIN and EXECUTE on the four functions it calls,
    nothing more; unset, pg_rewind connects as the superuser."""
    parameters: dict[str, str | int | float | bool] = field(default_factory=dict)
    pg_hba: list[str] = field(default_factory=list)
    os_user: str = "postgres"

    @property
    def port(self) -> int:
        return split_address(self.listen)[1]


def _command_list(value: Any) -> Any:
    """A hook may be one command line or a list of them."""
    return [value] if isinstance(value, str) else value


def _check_command(line: str) -> str:
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ValueError(f"cannot split {line!r} into a command and arguments: {exc}") from None
    if not words:
        raise ValueError("a hook command must not be empty")
    return line


HookCommands = Annotated[
    list[Annotated[str, Check(_check_command)]], Check(_command_list, before=True)
]


@dataclass(frozen=True, kw_only=True)
class HookSettings(Section):
    """Commands run by the agent around role changes (see pgha/agent/hooks.py)."""

    pre_promote: HookCommands = field(default_factory=list)
    """After taking the key, before promoting; a failure aborts the promotion."""
    on_role_change: HookCommands = field(default_factory=list)
    """After the role changed."""
    timeout: Annotated[float, Positive] = 5
    """Seconds per command."""

    @property
    def configured(self) -> bool:
        return bool(self.pre_promote or self.on_role_change)


@dataclass(frozen=True, kw_only=True)
class TagSettings(Section):
    nofailover: bool = False
    """Never promoted."""
    failover_priority: Annotated[int, NotNegative] = 1
    """Breaks ties between candidates at the same position, higher wins; 0 = never
    promoted automatically."""
    nosync: bool = False
    """Never a synchronous standby."""
    noloadbalance: bool = False
    """GET /replica answers 503."""
    clonefrom: bool = False
    """Preferred source for new clones."""


@dataclass(frozen=True, kw_only=True)
class Settings(Section):
    """Everything one agent needs to know about itself and where its cluster lives.

    `pgha.settings_load` reads it from the YAML file and the `PGHA_` environment.
    """

    cluster: Name = "main"
    namespace: Name = "pgha"
    node: Annotated[Name, Limits(max_length=63)]
    etcd: EtcdSettings = field(default_factory=EtcdSettings)
    postgres: PostgresSettings
    api: ApiSettings = field(default_factory=ApiSettings)
    tags: TagSettings = field(default_factory=TagSettings)
    hooks: HookSettings = field(default_factory=HookSettings)
    run_dir: Path = Path("/run/pgha")
    """Local state: the fencing deadline handed to the guard (tmpfs)."""
    ttl: Annotated[int, Limits(ge=2)] = 30
    """Seconds the leader lease lives unrenewed."""
    loop_wait: Annotated[float, Positive] = 10
    retry_timeout: Annotated[float, Positive] = 7
    safety_margin: Annotated[float, Positive] = 5
    primary_start_timeout: Annotated[float, NotNegative] = 300
    primary_unhealthy_timeout: Annotated[float, Positive] = 30
    """Seconds a running primary may fail to commit."""
    maximum_lag_on_failover: Annotated[int, NotNegative] = 1024 * 1024
    """Bytes."""
    maximum_lag_seconds_on_failover: Annotated[float, Limits(ge=0, allow_inf_nan=False)] = 0
    """Heartbeat lag in seconds; 0 = off."""

    def __post_init__(self) -> None:
        """Raise ValueError unless the timers leave a leader room to fence itself."""
        check_timers(self.ttl, self.loop_wait, self.retry_timeout, self.safety_margin)
        if self.hooks.configured and self.hooks.timeout >= self.ttl - self.safety_margin:
            raise ValueError(
                f"hooks.timeout ({self.hooks.timeout:g} s) must be shorter than ttl - "
                f"safety_margin ({self.ttl - self.safety_margin:g} s): a pre_promote hook "
                "runs while the new leader's lease counts down"
            )
        if self.etcd.timeout > self.retry_timeout:
            raise ValueError(
                f"etcd.timeout ({self.etcd.timeout:g} s) must not exceed retry_timeout "
                f"({self.retry_timeout:g} s)"
            )

    @property
    def prefix(self) -> str:
        """The etcd key prefix of this cluster, with a trailing slash."""
        return f"/{self.namespace}/{self.cluster}/"


MAX_TIMER_SECONDS = 86400
"""A day: a ttl or loop_wait beyond that is a typo, and etcd refuses leases past its limit."""


def check_timers(ttl: float, loop_wait: float, retry_timeout: float, safety_margin: float) -> None:
    """Raise ValueError unless a leader can always fence itself before its lease expires.

    A renewal sent after loop_wait plus a slow read (retry_timeout) and itself slow
    (retry_timeout) is known to have succeeded at t0 + loop_wait + 2 * retry_timeout; the
    margin must still fit before ttl, and cover two polls of the guard plus a second to stop.
    """
    named = (("ttl", ttl), ("loop_wait", loop_wait), ("retry_timeout", retry_timeout))
    for name, seconds in (*named, ("safety_margin", safety_margin)):
        # NaN and infinity pass every comparison below one way or the other.
        if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMER_SECONDS:
            raise ValueError(
                f"{name} must be more than 0 and at most {MAX_TIMER_SECONDS} s, got {seconds!r}"
            )
    need = loop_wait + 2 * retry_timeout + safety_margin
    if need > ttl:
        raise ValueError(
            f"timers leave no room to fence: loop_wait + 2 * retry_timeout + safety_margin "
            f"= {loop_wait:g} + 2 * {retry_timeout:g} + {safety_margin:g} = {need:g} s "
            f"exceeds ttl {ttl:g} s; raise ttl or lower the others"
        )
    floor = 2 * GUARD_POLL_INTERVAL_SECONDS + 1
    if safety_margin < floor:
        raise ValueError(f"safety_margin must be at least {floor:g} s, got {safety_margin:g} s")


def unreadable_files(settings: Settings) -> list[str]:
    """Secret and certificate files the settings name but this process cannot read."""
    named = {
        "etcd.password_file": settings.etcd.password_file,
        "etcd.ca_cert": settings.etcd.ca_cert,
        "etcd.cert": settings.etcd.cert,
        "etcd.key": settings.etcd.key,
        "postgres.superuser.password_file": settings.postgres.superuser.password_file,
        "postgres.replication.password_file": settings.postgres.replication.password_file,
        "postgres.rewind.password_file": (
            settings.postgres.rewind.password_file if settings.postgres.rewind else None
        ),
        "api.tls.cert": settings.api.tls.cert,
        "api.tls.key": settings.api.tls.key,
        "api.tls.ca_cert": settings.api.tls.ca_cert,
        "api.auth.token_file": settings.api.auth.token_file,
    }
    problems = []
    for key, path in named.items():
        if path is None:
            continue
        try:
            path.read_bytes()
        except OSError as exc:
            problems.append(f"{key}: cannot read {path} ({exc.strerror}); check the path and mode")
    return problems
