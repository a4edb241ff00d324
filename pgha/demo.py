"""`pgha demo`: a working three-node cluster on this machine, in one working directory.

It starts one etcd and three agents on loopback ports; the agents bootstrap the cluster
themselves (one initdb, two clones). As root, etcd, the agents and Postgres run as the
unprivileged `postgres` user (Postgres refuses to run as root). Stopping the demo stops
the agents (each stops its Postgres cleanly) and then etcd.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from pgha.adapters.etcd_store import EtcdStore
from pgha.adapters.processes import ManagedProcess, spawn
from pgha.adapters.store import ClusterSnapshot
from pgha.errors import PghaError
from pgha.status import cluster_document, healthy, render_status

ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
FIRST_PG_PORT = 15432
FIRST_API_PORT = 18008
NODES = ("pg1", "pg2", "pg3")
CLUSTER = "demo"
MARKER = ".pgha-demo"


class DemoError(PghaError):
    pass


class Demo:
    def __init__(self, workdir: Path, echo: Callable[[str], None]) -> None:
        self.workdir = workdir.resolve()
        self.echo = echo
        self.user = "postgres" if os.geteuid() == 0 else None
        self.processes: list[ManagedProcess] = []
        self.etcd_url = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"

    # --- start ----------------------------------------------------------------------------

    def start(self) -> None:
        self._check_ports_free()
        self._prepare_workdir()
        self._start_etcd()
        for index, node in enumerate(NODES):
            config = self._write_config(index, node)
            command = [sys.executable, "-m", "pgha", "agent", "--config", str(config)]
            log = self.workdir / f"{node}.log"
            self.processes.append(spawn(node, command, log, user=self.user, cwd=self.workdir))
        self.echo(f"started etcd and agents {', '.join(NODES)}; logs in {self.workdir}")

    def _check_ports_free(self) -> None:
        ports = [ETCD_CLIENT_PORT, ETCD_PEER_PORT]
        ports += [FIRST_PG_PORT + i for i in range(len(NODES))]
        ports += [FIRST_API_PORT + i for i in range(len(NODES))]
        for port in ports:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    raise DemoError(
                        f"port {port} on 127.0.0.1 is in use; the demo needs ports {ports}: "
                        "stop whatever listens there (an earlier demo?) and try again"
                    )

    def _prepare_workdir(self) -> None:
        if self.workdir.exists() and any(self.workdir.iterdir()):
            if not (self.workdir / MARKER).exists():
                raise DemoError(
                    f"{self.workdir} is not empty and was not made by `pgha demo`; "
                    "choose another directory with --dir"
                )
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / MARKER).write_text("made by pgha demo; removed by the next demo\n")
        for name in ("superuser.pw", "replication.pw", "rewind.pw"):
            secret = self.workdir / name
            secret.write_text(secrets.token_urlsafe(18) + "\n")
            secret.chmod(0o600)
        self.workdir.chmod(0o755)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in [self.workdir, *self.workdir.iterdir()]:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        command = [
            shutil.which("etcd") or "/usr/bin/etcd",
            "--name=demo",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=demo={peer}",
            "--experimental-watch-progress-notify-interval=5s",
        ]
        log = self.workdir / "etcd.log"
        self.processes.append(spawn("etcd", command, log, user=self.user, cwd=self.workdir))
        store = EtcdStore([self.etcd_url], f"/pgha/{CLUSTER}/", timeout=1.0)
        try:
            for _ in range(100):
                try:
                    store.read_cluster()
                    return
                except PghaError:
                    time.sleep(0.1)
        finally:
            store.close()
        raise DemoError(f"etcd did not come up; see {log}")

    def _write_config(self, index: int, node: str) -> Path:
        port = FIRST_PG_PORT + index
        (self.workdir / f"{node}-socket").mkdir()
        (self.workdir / f"{node}-run").mkdir()
        settings = {
            "cluster": CLUSTER,
            "node": node,
            "etcd": {"endpoints": [self.etcd_url], "timeout": 2},
            "postgres": {
                "data_dir": str(self.workdir / f"{node}-data"),
                "listen": f"127.0.0.1:{port}",
                "connect_address": f"127.0.0.1:{port}",
                "socket_dir": str(self.workdir / f"{node}-socket"),
                "superuser": {
                    "username": "postgres",
                    "password_file": str(self.workdir / "superuser.pw"),
                },
                "replication": {
                    "username": "replicator",
                    "password_file": str(self.workdir / "replication.pw"),
                },
                "rewind": {
                    "username": "rewinder",
                    "password_file": str(self.workdir / "rewind.pw"),
                },
            },
            "api": {"listen": f"127.0.0.1:{FIRST_API_PORT + index}"},
            "run_dir": str(self.workdir / f"{node}-run"),
            "ttl": 10,
            "loop_wait": 1,
            "retry_timeout": 3,
            "safety_margin": 2,
        }
        path = self.workdir / f"{node}.yml"
        path.write_text(yaml.safe_dump(settings, sort_keys=False))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for owned in (path, self.workdir / f"{node}-socket", self.workdir / f"{node}-run"):
                os.chown(owned, entry.pw_uid, entry.pw_gid)
        return path

    # --- watch and stop -------------------------------------------------------------------

    def snapshot(self) -> ClusterSnapshot:
        store = EtcdStore([self.etcd_url], f"/pgha/{CLUSTER}/", timeout=2.0)
        try:
            return store.read_cluster()
        finally:
            store.close()

    def wait_until_healthy(self, timeout_seconds: float) -> ClusterSnapshot:
        give_up = time.monotonic() + timeout_seconds
        while True:
            dead = [p.name for p in self.processes if not p.alive()]
            if dead:
                raise DemoError(f"{', '.join(dead)} exited; see the logs in {self.workdir}")
            try:
                snapshot = self.snapshot()
                if healthy(snapshot, len(NODES)):
                    return snapshot
            except PghaError:
                pass
            if time.monotonic() > give_up:
                raise DemoError(
                    f"the cluster was not healthy within {timeout_seconds:g} s; "
                    f"see the logs in {self.workdir}"
                )
            time.sleep(0.5)

    def status(self, snapshot: ClusterSnapshot) -> str:
        return render_status(cluster_document(CLUSTER, snapshot))

    def connect_hint(self) -> str:
        """How to reach the primary through the multi-host DSN, wherever it is."""
        hosts = ",".join("127.0.0.1" for _ in NODES)
        ports = ",".join(str(FIRST_PG_PORT + i) for i in range(len(NODES)))
        dsn = (
            f"host={hosts} port={ports} user=postgres dbname=postgres "
            "target_session_attrs=read-write connect_timeout=2"
        )
        return f'PGPASSWORD=$(cat {self.workdir / "superuser.pw"}) psql "{dsn}"'

    def stop(self) -> None:
        agents = [p for p in self.processes if p.name != "etcd"]
        for process in agents:
            process.signal(signal.SIGTERM)
        for process in agents:
            if not process.wait(90):
                self.echo(f"{process.name} did not stop within 90 s: killing it")
                process.kill()
        for process in self.processes:
            if process.name == "etcd":
                process.signal(signal.SIGTERM)
                if not process.wait(15):
                    process.kill()
        self.echo("demo stopped")
