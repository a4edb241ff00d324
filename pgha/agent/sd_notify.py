"""systemd's notify protocol: READY, WATCHDOG, STATUS and STOPPING datagrams.

Under a `Type=notify` unit systemd hands the service the address of a datagram socket in
`NOTIFY_SOCKET` (a path, or an abstract socket written with a leading '@'), and, when the
unit sets `WatchdogSec=`, the interval in `WATCHDOG_USEC` (with `WATCHDOG_PID` naming the
process it is meant for). A message is one datagram of newline-separated `KEY=value`
lines. Outside systemd `NOTIFY_SOCKET` is unset and every call here does nothing.

Sending never raises: a lost notification must not take the agent down with it (systemd
restarts a service whose watchdog starves, which is the right outcome for a lost ping).
The agent's children never see these variables (pg_process and processes scrub them): a
postmaster built `--with-systemd` would otherwise report READY and STOPPING on the
agent's behalf (traps 11).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("pgha.agent")


class Notifier:
    """Talks to the service manager named by `NOTIFY_SOCKET`, or to nobody."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec if address else None

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> Notifier:
        """Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` as sd_watchdog_enabled()
        does: the watchdog counts only when it is meant for this very process."""
        env = os.environ if environ is None else environ
        return cls(
            env.get("NOTIFY_SOCKET"), _watchdog_usec(env, os.getpid() if pid is None else pid)
        )

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_seconds(self) -> float | None:
        """The unit's WatchdogSec, or None when no watchdog watches this process."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(*_status(text))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def send(self, *lines: str) -> bool:
        """One datagram; True if it was handed to the socket, False if nobody listens."""
        if self.address is None or not lines:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            log.warning("could not notify the service manager at %s: %s", self.address, exc)
            return False
        return True


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    # One line: a newline would start another KEY=value assignment.
    return ("STATUS=" + " ".join(text.split()),)


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    text = env.get("WATCHDOG_USEC", "")
    if not text.isdigit() or int(text) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(text)
