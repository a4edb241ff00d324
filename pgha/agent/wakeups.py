"""How the agent's main thread sleeps: until a signal, the postmaster's exit, or a timeout.

The main thread enforces the fencing deadline and restarts the cycle when the postmaster
dies. Polling for both every half second cost most of an idle agent's CPU; instead it
blocks in one `select` on
- a pidfd of the postmaster (Linux 5.3+), readable the moment the postmaster exits, even
  before anyone reaps it, so a crashed Postgres is noticed at once;
- the signal wake-up pipe, so SIGTERM ends the sleep at once;
and a timeout the caller computes (the time left to the fencing deadline, capped).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading

log = logging.getLogger("pgha.agent")


class Wakeups:
    def __init__(self) -> None:
        self._pipe_read, self._pipe_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous_wakeup_fd: int | None = None
        if threading.current_thread() is threading.main_thread():
            self._previous_wakeup_fd = signal.set_wakeup_fd(
                self._pipe_write, warn_on_full_buffer=False
            )
        self._pidfd: int | None = None
        self._watched_pid: int | None = None
        self._exited_pid: int | None = None

    def watch_process(self, pid: int | None) -> None:
        """Wake when `pid` exits (None: watch nothing). Cheap to call with the same pid."""
        if pid is None:
            self._close_pidfd()
            return
        if pid in (self._watched_pid, self._exited_pid):
            return
        self._close_pidfd()
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return  # already gone: the caller notices on its next look
        except OSError as exc:
            log.debug("no pidfd for postmaster %d (%s): noticed by the timeout only", pid, exc)
            return
        self._watched_pid = pid

    def reports_exit_of(self, pid: int | None) -> bool:
        """Whether a sleep ends at once when `pid` exits (None, nothing to watch: True)."""
        return pid is None or pid == self._watched_pid

    def wake(self) -> None:
        """End the current (or next) sleep at once; safe from any thread."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._pipe_write, b"\0")

    def sleep(self, timeout: float) -> None:
        """Block until woken, the watched process exits, or `timeout` seconds pass."""
        readers = [self._pipe_read]
        if self._pidfd is not None:
            readers.append(self._pidfd)
        ready, _, _ = select.select(readers, [], [], max(timeout, 0.0))
        if self._pipe_read in ready:
            self._drain()
        if self._pidfd is not None and self._pidfd in ready:
            # The process exited: stop watching it, or every later sleep returns at once.
            self._exited_pid = self._watched_pid
            self._close_pidfd()

    def close(self) -> None:
        if self._previous_wakeup_fd is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._previous_wakeup_fd = None
        self._close_pidfd()
        for fd in (self._pipe_read, self._pipe_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._pipe_read, 512):
                pass

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
        self._pidfd = None
        self._watched_pid = None
