"""A real agent under a stand-in for systemd's notify socket: READY once its first cycle is
done, WATCHDOG=1 while it is healthy, no ping that a watchdog kill could not honour before
the fencing deadline, nothing while frozen, STOPPING=1 on SIGTERM, and nothing from
Postgres or the guard (traps 11: the agent keeps NOTIFY_SOCKET from its children)."""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pgha.agent.fencing_deadline import boottime, read_deadline
from tests.fixtures.agent_node import AgentNode
from tests.fixtures.cluster import Cluster

pytestmark = pytest.mark.integration

WATCHDOG_SECONDS = 3
"""Short enough for the test's timers (ttl 10, safety_margin 2): right after a renewal a
leader has 8 s to its deadline, room for a ping followed by 3 s + the kill allowance."""


@dataclass(frozen=True)
class Message:
    received_at: float
    """CLOCK_BOOTTIME, the clock of the fencing deadline."""
    pid: int
    lines: tuple[str, ...]
    deadline: float | None
    """The fencing deadline the node had published when the message arrived."""
    cycles_logged: int


class NotifySocket:
    """An abstract datagram socket like systemd's, noting each sender's PID (SO_PASSCRED)."""

    def __init__(self) -> None:
        self.address = f"@pgha-test-notify-{uuid.uuid4().hex[:12]}"
        self.node: AgentNode | None = None
        self.messages: list[Message] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind("\0" + self.address[1:])
        self._sock.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        credentials_size = struct.calcsize("iII")
        while not self._closed.is_set():
            try:
                data, ancillary, _, _ = self._sock.recvmsg(4096, socket.CMSG_SPACE(64))
            except (TimeoutError, OSError):
                continue
            pid = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:credentials_size])[0]
            self.messages.append(self._message(pid, data))

    def _message(self, pid: int, data: bytes) -> Message:
        deadline, cycles = None, 0
        if self.node is not None:
            published = read_deadline(self.node.run_dir / f"{self.node.name}.deadline")
            deadline = published.deadline if published is not None else None
            cycles = self.node.log().count(" code=")
        lines = tuple(data.decode().split("\n"))
        return Message(boottime(), pid, lines, deadline, cycles)

    def from_pid(self, pid: int) -> list[Message]:
        return [message for message in self.messages if message.pid == pid]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    """Every process the test starts from here on inherits NOTIFY_SOCKET and WATCHDOG_USEC,
    as the main process of a unit would."""
    listener = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_SECONDS * 1_000_000))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield listener
    finally:
        listener.close()


def pings(messages: list[Message]) -> list[Message]:
    return [message for message in messages if "WATCHDOG=1" in message.lines]


def test_the_agent_reports_ready_pings_while_healthy_and_stops_in_time(
    agent_cluster: Callable[..., Cluster], notify_socket: NotifySocket
) -> None:
    cluster = agent_cluster(1)
    node = cluster.nodes[0]
    notify_socket.node = node
    agent = node.agent_pid

    ready = cluster.wait_until(
        lambda: [m for m in notify_socket.from_pid(agent) if "READY=1" in m.lines],
        what="the agent sent READY=1",
    )
    cluster.check(len(ready) == 1, f"READY=1 sent {len(ready)} times")
    cluster.check(ready[0].cycles_logged >= 1, "READY=1 came before the first cycle was done")
    cluster.check(
        any(line.startswith("STATUS=") for line in ready[0].lines), "no STATUS with READY"
    )
    cluster.wait_healthy(timeout=60)

    # Healthy: every completed cycle pings (the main thread may add more between cycles).
    start_cycles, start_pings = node.log().count(" code="), len(pings(notify_socket.messages))
    cluster.wait_until(
        lambda: node.log().count(" code=") >= start_cycles + 5, what="five more cycles"
    )
    cycles = node.log().count(" code=") - start_cycles
    healthy_pings = pings(notify_socket.from_pid(agent))[start_pings:]
    cluster.check(
        len(healthy_pings) >= cycles - 1, f"{len(healthy_pings)} pings for {cycles} cycles"
    )

    # A leader whose renewals fail: no ping after which the watchdog would fire past the
    # fencing deadline (2 s of the kill allowance cover the datagram's delivery here).
    cluster.etcd.freeze()
    try:
        cluster.wait_until(
            lambda: "fence_past_deadline" in node.log() or "fencing deadline passed" in node.log(),
            what="the leader fenced itself",
            timeout=30,
        )
    finally:
        cluster.etcd.thaw()
    leader_pings = [
        (m.received_at, m.deadline)
        for m in pings(notify_socket.from_pid(agent))
        if m.deadline is not None
    ]
    cluster.check(leader_pings, "the leader never pinged")
    late = [(at, deadline) for at, deadline in leader_pings if at + WATCHDOG_SECONDS >= deadline]
    cluster.check(not late, f"pings a watchdog kill could not honour in time: {late}")

    # A frozen agent sends nothing: no other process pings on its behalf.
    node.freeze()
    frozen_since = len(notify_socket.messages)
    time.sleep(WATCHDOG_SECONDS + 1)
    during_freeze = notify_socket.messages[frozen_since:]
    node.thaw()
    cluster.check(not during_freeze, f"datagrams while the agent was frozen: {during_freeze}")

    node.terminate()
    cluster.wait_until(
        lambda: any("STOPPING=1" in m.lines for m in notify_socket.from_pid(agent)),
        what="the agent sent STOPPING=1",
        timeout=10,
    )
    after_stopping = notify_socket.from_pid(agent)
    last_stop = max(i for i, m in enumerate(after_stopping) if "STOPPING=1" in m.lines)
    cluster.check(not pings(after_stopping[last_stop:]), "WATCHDOG=1 after STOPPING=1")

    # Only the agent talks to the service manager (etcd, started by the test with the same
    # environment, is not part of the node).
    strangers = {m.pid for m in notify_socket.messages} - {agent, cluster.etcd.pid}
    cluster.check(not strangers, f"notifications from other processes: {strangers}")
