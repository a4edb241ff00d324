"""The notify client speaks systemd's datagram protocol, and is silent outside systemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha.agent.sd_notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    try:
        yield str(path), sock
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_each_message_is_one_datagram_of_key_value_lines(
    listener: tuple[str, socket.socket],
) -> None:
    address, sock = listener
    notifier = Notifier(address)
    assert notifier.ready("bootstrapped\nthe cluster")
    assert received(sock) == ["READY=1", "STATUS=bootstrapped the cluster"]
    assert notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    assert notifier.status("follow_leader: streaming from pg1")
    assert received(sock) == ["STATUS=follow_leader: streaming from pg1"]
    assert notifier.stopping()
    assert received(sock) == ["STOPPING=1"]


def test_an_abstract_socket_is_written_with_a_leading_at() -> None:
    name = f"pgha-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier("@" + name).watchdog()
        assert received(sock) == ["WATCHDOG=1"]


def test_without_notify_socket_nothing_is_sent_and_there_is_no_watchdog() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "15000000"}, pid=42)
    assert not notifier.enabled
    assert notifier.watchdog_seconds is None
    assert not notifier.ready()
    assert not notifier.watchdog()


def test_a_socket_nobody_listens_on_is_reported_not_raised(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone")).watchdog()


@pytest.mark.parametrize(
    ("environ", "seconds"),
    [
        ({"WATCHDOG_USEC": "15000000"}, 15.0),
        ({"WATCHDOG_USEC": "15000000", "WATCHDOG_PID": "42"}, 15.0),
        ({"WATCHDOG_USEC": "15000000", "WATCHDOG_PID": "43"}, None),  # meant for another
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_counts_only_when_it_is_meant_for_this_process(
    environ: dict[str, str], seconds: float | None
) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@x", **environ}, pid=42)
    assert notifier.watchdog_seconds == seconds
