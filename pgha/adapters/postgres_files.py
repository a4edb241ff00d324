"""The files pgha owns in and beside a data directory, and how they are written.

- `pgha.conf` in the data directory: every postgresql.conf setting pgha manages, including
  the upstream (`primary_conninfo`, `primary_slot_name`) of a replica. postgresql.conf
  only gains one `include 'pgha.conf'` line at its end, so our values win over initdb's.
- `pg_hba.conf` and `pg_ident.conf` in the data directory, rewritten from the settings.
- `standby.signal`, present exactly when the node is to run as a replica.
- `<data_dir>.pgpass` beside the data directory: the passwords the tools and the WAL
  receiver use, so that no password is ever on a command line, in a log line, or in a file
  pg_basebackup would copy to other nodes.
- `<data_dir>.log` beside it: the server log pg_ctl writes.

The upstream lives in exactly one place (traps 10c): postgresql.auto.conf is read after
every include and would override pgha.conf, so `remove_upstream_from_auto_conf` strips
`primary_conninfo` and `primary_slot_name` from it after every clone and rewind, and pgha
itself never uses ALTER SYSTEM for them.

Every file is written atomically (temporary file, fsync, rename), owned by the OS user that
runs Postgres, mode 0600.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

from pgha.adapters.pg_process import RunAs
from pgha.adapters.postgres_state import Upstream
from pgha.errors import PostgresError
from pgha.settings import PostgresSettings
from pgha.settings_base import split_address

PGHA_CONF = "pgha.conf"
SYNC_CONF = "pgha-sync.conf"
"""synchronous_standby_names alone, included last by pgha.conf: the leader rewrites it and
reloads whenever its sync set changes, without touching anything else."""
IDENT_MAP = "pgha"
UPSTREAM_PARAMETERS = frozenset({"primary_conninfo", "primary_slot_name"})
# Settings only pgha may set: `parameters` overriding them would move the sockets, the
# port or the upstream behind pgha's back.
OWNED_PARAMETERS = UPSTREAM_PARAMETERS | {
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "hba_file",
    "ident_file",
    "data_directory",
    "config_file",
}
# Defaults that `parameters` may override.
DEFAULT_PARAMETERS: dict[str, str | int | bool] = {
    "password_encryption": "scram-sha-256",
    "wal_level": "replica",
    "hot_standby": True,
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_keep_size": "128MB",
    # Every node keeps a slot for every other member (agent/slots.py): this bounds what the
    # slot of a dead member may retain before Postgres marks it lost, so it cannot fill
    # the disk.
    "max_slot_wal_keep_size": "8GB",
    # pg_rewind needs checksums or hint-bit logging; initdb turns checksums on, this
    # covers data directories initialised elsewhere.
    "wal_log_hints": True,
    "recovery_target_timeline": "latest",
}
SOCKET_PATH_MAX_BYTES = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_SETTING_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=|\s|$)")
_INCLUDE_LINE = re.compile(r"^\s*include\s*=?\s*'pgha\.conf'")


@dataclass(frozen=True)
class PostgresPaths:
    data_dir: Path
    passfile: Path
    log_file: Path

    @classmethod
    def for_settings(cls, settings: PostgresSettings) -> PostgresPaths:
        data_dir = settings.data_dir.absolute()
        return cls(
            data_dir=data_dir,
            passfile=data_dir.with_name(data_dir.name + ".pgpass"),
            log_file=data_dir.with_name(data_dir.name + ".log"),
        )

    @property
    def pgha_conf(self) -> Path:
        return self.data_dir / PGHA_CONF

    @property
    def sync_conf(self) -> Path:
        return self.data_dir / SYNC_CONF

    @property
    def postgresql_conf(self) -> Path:
        return self.data_dir / "postgresql.conf"

    @property
    def auto_conf(self) -> Path:
        return self.data_dir / "postgresql.auto.conf"

    @property
    def hba(self) -> Path:
        return self.data_dir / "pg_hba.conf"

    @property
    def ident(self) -> Path:
        return self.data_dir / "pg_ident.conf"

    @property
    def standby_signal(self) -> Path:
        return self.data_dir / "standby.signal"

    @property
    def recovery_signal(self) -> Path:
        return self.data_dir / "recovery.signal"


def write_private_file(path: Path, text: str, run_as: RunAs) -> None:
    """Atomically replace `path` with `text`, owned by the OS user, mode 0600."""
    temporary = path.with_name(f".{path.name}.pgha-new")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temporary, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)
            if run_as.uid is not None and run_as.gid is not None:
                os.fchown(fd, run_as.uid, run_as.gid)
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise PostgresError(f"cannot write {path}: {exc}") from None


def prepare_private_file(path: Path, run_as: RunAs) -> None:
    """Make sure `path` exists, belongs to the OS user and is mode 0600 (the server log)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            if run_as.uid is not None and run_as.gid is not None:
                os.fchown(fd, run_as.uid, run_as.gid)
        finally:
            os.close(fd)
    except OSError as exc:
        raise PostgresError(f"cannot prepare {path}: {exc}") from None


def ensure_empty_data_dir(data_dir: Path, run_as: RunAs) -> None:
    """Create `data_dir` (mode 0700, owned by the OS user) or check that it is empty.

    A non-empty directory is refused, never wiped: it may hold the only copy of data.
    """
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(mode=0o700, exist_ok=True)
        if any(data_dir.iterdir()):
            raise PostgresError(
                f"data directory {data_dir} is not empty; pgha never overwrites existing data "
                "(move it aside first)"
            )
        run_as.chown(data_dir)
        data_dir.chmod(0o700)
    except OSError as exc:
        raise PostgresError(f"cannot prepare data directory {data_dir}: {exc}") from None


def check_socket_dir(socket_dir: Path) -> None:
    longest = socket_dir / ".s.PGSQL.65535"
    if len(os.fsencode(longest)) > SOCKET_PATH_MAX_BYTES:
        raise PostgresError(
            f"socket_dir {socket_dir} is too long: a unix socket path in it would exceed "
            f"{SOCKET_PATH_MAX_BYTES} bytes; choose a shorter directory"
        )


def ensure_socket_dir(socket_dir: Path, run_as: RunAs) -> None:
    """Create the socket directory if it is missing (it usually lives on a tmpfs that a
    reboot empties); an existing one is left as it is."""
    check_socket_dir(socket_dir)
    if socket_dir.is_dir():
        return
    try:
        socket_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        run_as.chown(socket_dir)
        socket_dir.chmod(0o755)
    except OSError as exc:
        raise PostgresError(f"cannot create socket directory {socket_dir}: {exc}") from None


def remove_file(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise PostgresError(f"cannot remove {path}: {exc}") from None


def quote_value(value: str | int | float | bool) -> str:
    """A postgresql.conf value: booleans as on/off, numbers bare, strings single-quoted."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return repr(value)
    if any(ch in value for ch in "\n\r\0"):
        raise PostgresError(f"configuration value {value!r} contains a line break or NUL")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def walreceiver_conninfo(
    settings: PostgresSettings, paths: PostgresPaths, upstream: Upstream, application_name: str
) -> str:
    """primary_conninfo: the replication user, its password through the passfile."""
    return make_conninfo(
        host=upstream.host,
        port=upstream.port,
        user=settings.replication.username,
        passfile=str(paths.passfile),
        application_name=application_name,
        connect_timeout=5,
    )


def render_pgha_conf(
    settings: PostgresSettings,
    paths: PostgresPaths,
    *,
    upstream: Upstream | None,
    application_name: str,
) -> str:
    clash = sorted(OWNED_PARAMETERS & {name.lower() for name in settings.parameters})
    if clash:
        raise PostgresError(
            f"postgres.parameters may not set {', '.join(clash)}: pgha manages them "
            "(use postgres.listen, postgres.socket_dir, postgres.pg_hba instead)"
        )
    host, port = split_address(settings.listen)
    values: dict[str, str | int | float | bool] = {
        "listen_addresses": host,
        "port": port,
        "unix_socket_directories": str(settings.socket_dir),
        "hba_file": str(paths.hba),
        "ident_file": str(paths.ident),
        **DEFAULT_PARAMETERS,
    }
    if upstream is not None:
        values["primary_conninfo"] = walreceiver_conninfo(
            settings, paths, upstream, application_name
        )
        values["primary_slot_name"] = upstream.slot or ""
    values.update(settings.parameters)
    lines = [
        "# Written by pgha; every change here is overwritten. Set extra parameters in",
        "# pgha's postgres.parameters. Never ALTER SYSTEM primary_conninfo: pgha owns it.",
    ]
    for name, value in values.items():
        if not _NAME.match(name):
            raise PostgresError(f"postgres.parameters: {name!r} is not a parameter name")
        lines.append(f"{name} = {quote_value(value)}")
    lines.append(f"include_if_exists '{SYNC_CONF}'")
    return "\n".join(lines) + "\n"


def render_sync_conf(synchronous_standby_names: str) -> str:
    return (
        "# Written by pgha's leader (synchronous_mode); every change here is overwritten.\n"
        f"synchronous_standby_names = {quote_value(synchronous_standby_names)}\n"
    )


def _hba_token(name: str) -> str:
    if not name or any(ch in name for ch in '"\n\r\0') or name != name.strip():
        raise PostgresError(f"user name {name!r} cannot be written to pg_hba.conf")
    return f'"{name}"'


def _connect_networks(connect_address: str) -> list[str]:
    """Where the members connect from: loopback for a loopback address, else `samenet`
    (every subnet this host is directly connected to), never the whole world (traps 22)."""
    host, _ = split_address(connect_address)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ["samenet"]
    if address.is_loopback:
        return ["127.0.0.0/8", "::1/128"]
    return ["samenet"]


def render_pg_hba(settings: PostgresSettings) -> str:
    superuser = _hba_token(settings.superuser.username)
    replication = _hba_token(settings.replication.username)
    rewind = _hba_token(settings.rewind.username) if settings.rewind is not None else None
    lines = [
        "# Written by pgha from postgres.superuser, postgres.replication, postgres.rewind,",
        "# postgres.connect_address and postgres.pg_hba; every change here is overwritten.",
        f"local  all          {superuser}  peer map={IDENT_MAP}",
    ]
    for network in _connect_networks(settings.connect_address):
        lines.append(f"host   all          {superuser}  {network}  scram-sha-256")
        lines.append(f"host   replication  {replication}  {network}  scram-sha-256")
        if rewind is not None:
            # pg_rewind's functions run in the postgres database, and only there.
            lines.append(f"host   postgres     {rewind}  {network}  scram-sha-256")
    for extra in settings.pg_hba:
        if any(ch in extra for ch in "\n\r\0"):
            raise PostgresError(f"postgres.pg_hba line {extra!r} contains a line break")
        lines.append(extra)
    return "\n".join(lines) + "\n"


def render_pg_ident(settings: PostgresSettings, run_as: RunAs) -> str:
    """Who may connect locally as the superuser by peer authentication: the OS user that
    runs Postgres and the one that runs the agent (root, when it switches users)."""
    superuser = _hba_token(settings.superuser.username)
    agent_user = "root" if os.geteuid() == 0 else run_as.name
    system_users = dict.fromkeys([run_as.name, agent_user, settings.os_user])
    lines = ["# Written by pgha; every change here is overwritten."]
    lines += [f"{IDENT_MAP}  {_hba_token(user)}  {superuser}" for user in system_users]
    return "\n".join(lines) + "\n"


def _passfile_field(text: str) -> str:
    if any(ch in text for ch in "\n\r\0"):
        raise PostgresError("a password or user name contains a line break")
    return text.replace("\\", "\\\\").replace(":", "\\:")


def render_passfile(settings: PostgresSettings) -> str:
    """Any host, port and database: the upstream moves, the users and passwords do not."""
    lines = []
    users = (settings.replication, settings.superuser, settings.rewind)
    for credentials in (user for user in users if user is not None):
        password = credentials.secret()
        if password is not None:
            user = _passfile_field(credentials.username)
            lines.append(f"*:*:*:{user}:{_passfile_field(password)}")
    return "".join(line + "\n" for line in lines)


def ensure_include(paths: PostgresPaths, run_as: RunAs) -> None:
    """Append `include 'pgha.conf'` to postgresql.conf unless it is already there."""
    try:
        text = paths.postgresql_conf.read_text()
    except OSError as exc:
        raise PostgresError(f"cannot read {paths.postgresql_conf}: {exc}") from None
    if any(_INCLUDE_LINE.match(line) for line in text.splitlines()):
        return
    if text and not text.endswith("\n"):
        text += "\n"
    text += f"\n# Added by pgha: its settings come last so that they win.\ninclude '{PGHA_CONF}'\n"
    write_private_file(paths.postgresql_conf, text, run_as)


def remove_upstream_from_auto_conf(paths: PostgresPaths, run_as: RunAs) -> list[str]:
    """Strip primary_conninfo / primary_slot_name from postgresql.auto.conf (traps 10c).

    Returns the names of the parameters removed (never their values: a primary_conninfo
    written by hand may hold a password).
    """
    try:
        text = paths.auto_conf.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise PostgresError(f"cannot read {paths.auto_conf}: {exc}") from None
    kept: list[str] = []
    removed: list[str] = []
    for line in text.splitlines():
        match = _SETTING_LINE.match(line)
        if match and match.group(1).lower() in UPSTREAM_PARAMETERS:
            removed.append(match.group(1))
        else:
            kept.append(line)
    if removed:
        write_private_file(paths.auto_conf, "".join(line + "\n" for line in kept), run_as)
    return removed


def remove_copied_socket_locks(paths: PostgresPaths) -> None:
    """pg_basebackup copies `.s.PGSQL.<port>.lock` when the source kept its socket in its
    data directory; a copied lock file stops our server from creating its own socket."""
    for lock in paths.data_dir.glob(".s.PGSQL.*"):
        remove_file(lock)
