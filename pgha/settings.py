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
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from pgha.errors import ConfigError
from pgha.settings_api import ApiSettings
from pgha.settings_base import Address, EtcdEndpoint, Section, split_address

GUARD_POLL_INTERVAL_SECONDS = 0.5
"""How late the guard may notice a passed deadline, at worst: it sleeps until the deadline
itself, so this is slack for a loaded host; safety_margin must cover it twice."""
GUARD_LONGEST_SLEEP_SECONDS = 2.0
"""The guard's longest sleep between two looks at the deadline file."""


class _PasswordSource(Section):
    """A password given inline, or in a file (never both); the environment can set either."""

    password: SecretStr | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_password_source(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        return self

    def secret(self) -> str | None:
        """The password itself, read from `password_file` when that is how it was given."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return None


class Credentials(_PasswordSource):
    """A database user and its password."""

    username: str


class EtcdSettings(_PasswordSource):
    endpoints: list[EtcdEndpoint] = Field(default=["http://127.0.0.1:2379"], min_length=1)
    username: str | None = None
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    timeout: float = Field(default=2.0, gt=0, description="seconds per etcd request")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together: give both or neither")
        has_password = self.password is not None or self.password_file is not None
        if has_password and self.username is None:
            raise ValueError("a password needs a username")
        return self


class PostgresSettings(Section):
    data_dir: Path
    bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    listen: Address = "127.0.0.1:5432"
    connect_address: Address = "127.0.0.1:5432"
    socket_dir: Path = Field(
        default=Path("/run/postgresql"),
        description="unix socket directory; never the data directory (pg_basebackup copies it)",
    )
    superuser: Credentials = Credentials(username="postgres")
    replication: Credentials = Credentials(username="replicator")
    rewind: Credentials | None = Field(
        default=None,
        description=(
            "the user pg_rewind connects as: LOGIN and EXECUTE on the four functions it "
            "calls, nothing more; unset, pg_rewind connects as the superuser"
        ),
    )
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    pg_hba: list[str] = Field(default_factory=list)
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
    list[Annotated[str, AfterValidator(_check_command)]], BeforeValidator(_command_list)
]


class HookSettings(Section):
    """Commands run by the agent around role changes (see pgha/agent/hooks.py)."""

    pre_promote: HookCommands = Field(
        default=[],
        description="after taking the key, before promoting; a failure aborts the promotion",
    )
    on_role_change: HookCommands = Field(default=[], description="after the role changed")
    timeout: float = Field(default=5, gt=0, description="seconds per command")

    @property
    def configured(self) -> bool:
        return bool(self.pre_promote or self.on_role_change)


class TagSettings(Section):
    nofailover: bool = Field(default=False, description="never promoted")
    failover_priority: int = Field(
        default=1,
        ge=0,
        description="breaks ties between candidates at the same position, higher wins; "
        "0 = never promoted automatically",
    )
    nosync: bool = Field(default=False, description="never a synchronous standby")
    noloadbalance: bool = Field(default=False, description="GET /replica answers 503")
    clonefrom: bool = Field(default=False, description="preferred source for new clones")


class Settings(BaseSettings):
    """Everything one agent needs to know about itself and where its cluster lives."""

    model_config = SettingsConfigDict(
        env_prefix="PGHA_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    cluster: str = Field(default="main", pattern=r"^[A-Za-z0-9_.-]+$")
    namespace: str = Field(default="pgha", pattern=r"^[A-Za-z0-9_.-]+$")
    node: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=63)
    etcd: EtcdSettings = EtcdSettings()
    postgres: PostgresSettings
    api: ApiSettings = ApiSettings()
    tags: TagSettings = TagSettings()
    hooks: HookSettings = HookSettings()
    run_dir: Path = Field(
        default=Path("/run/pgha"),
        description="local state: the fencing deadline handed to the guard (tmpfs)",
    )
    ttl: int = Field(default=30, ge=2, description="seconds the leader lease lives unrenewed")
    loop_wait: float = Field(default=10, gt=0)
    retry_timeout: float = Field(default=7, gt=0)
    safety_margin: float = Field(default=5, gt=0)
    primary_start_timeout: float = Field(default=300, ge=0)
    primary_unhealthy_timeout: float = Field(
        default=30, gt=0, description="seconds a running primary may fail to commit"
    )
    maximum_lag_on_failover: int = Field(default=1024 * 1024, ge=0, description="bytes")
    maximum_lag_seconds_on_failover: float = Field(
        default=0, ge=0, allow_inf_nan=False, description="heartbeat lag in seconds; 0 = off"
    )

    @model_validator(mode="after")
    def _timers_leave_room_to_fence(self) -> Self:
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
        return self

    @property
    def prefix(self) -> str:
        """The etcd key prefix of this cluster, with a trailing slash."""
        return f"/{self.namespace}/{self.cluster}/"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments beat the environment, which beats the YAML file.
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


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


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from a YAML file (if given) and the environment.

    Raises ConfigError with one line per problem, each naming the key, the file and what
    was expected.
    """
    source = str(config_file) if config_file is not None else "environment"
    if config_file is not None:
        _check_yaml_file(config_file)

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=config_file)

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError([_describe(source, error) for error in exc.errors()]) from None


def _check_yaml_file(config_file: Path) -> None:
    try:
        text = config_file.read_text()
    except OSError as exc:
        raise ConfigError(
            [f"{config_file}: cannot read the file ({exc.strerror}); check its path and mode"]
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{config_file}: not valid YAML{where}: {problem}"]) from None
    if document is not None and not isinstance(document, dict):
        raise ConfigError(
            [f"{config_file}: expected a mapping of keys at the top, got {type(document).__name__}"]
        )


def _describe(source: str, error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "missing":
        return f"{source}: {key}: required key is missing"
    if kind == "extra_forbidden":
        return f"{source}: {key}: unknown key (check its spelling and section)"
    message = error["msg"].removeprefix("Value error, ")
    if "input" in error and kind not in ("value_error", "assertion_error"):
        shown = error["input"]
        secret = "password" in key or "token" in key
        if isinstance(shown, (str, int, float, bool)) and not secret:
            message = f"{message} (got {shown!r})"
    return f"{source}: {key}: {message}"


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


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, every secret replaced by '**********'."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    return data
