"""The main thread's sleep ends at a process exit, a wake-up or its timeout, whichever first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from pgha.agent.wakeups import Wakeups


def test_the_sleep_ends_when_the_watched_process_exits() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    wakeups = Wakeups()
    try:
        wakeups.watch_process(child.pid)
        threading.Timer(0.2, child.kill).start()
        started = time.monotonic()
        wakeups.sleep(30)
        assert time.monotonic() - started < 29, "the exit did not end the sleep"
        child.wait()
        # Once noticed, the dead process no longer cuts sleeps short.
        wakeups.watch_process(child.pid)
        started = time.monotonic()
        wakeups.sleep(0.3)
        assert time.monotonic() - started >= 0.3
    finally:
        child.kill()
        child.wait()
        wakeups.close()


def test_it_says_whose_exit_ends_the_sleep() -> None:
    """The main thread naps long only while a pidfd reports the postmaster's exit."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    wakeups = Wakeups()
    try:
        assert wakeups.reports_exit_of(None)
        assert not wakeups.reports_exit_of(child.pid)
        wakeups.watch_process(child.pid)
        assert wakeups.reports_exit_of(child.pid)
        child.kill()
        wakeups.sleep(30)
        assert not wakeups.reports_exit_of(child.pid), "an exited process is not watched"
    finally:
        child.kill()
        child.wait()
        wakeups.close()


def test_wake_from_another_thread_and_a_signal_end_the_sleep() -> None:
    wakeups = Wakeups()
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    try:
        threading.Timer(0.1, wakeups.wake).start()
        started = time.monotonic()
        wakeups.sleep(30)
        assert time.monotonic() - started < 29
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        started = time.monotonic()
        wakeups.sleep(30)
        assert time.monotonic() - started < 29, "the signal did not end the sleep"
    finally:
        signal.signal(signal.SIGUSR1, previous)
        wakeups.close()


def test_a_pid_that_is_gone_is_not_watched() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    wakeups = Wakeups()
    try:
        wakeups.watch_process(child.pid)
        started = time.monotonic()
        wakeups.sleep(0.2)
        assert time.monotonic() - started >= 0.2
    finally:
        wakeups.close()


def test_the_guard_imports_neither_pydantic_nor_the_database_and_etcd_clients() -> None:
    """The guard is a second process on every node: it must stay a few MiB."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pgha.agent.guard; print(' '.join(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    heavy = {"pydantic", "pydantic_settings", "psycopg", "urllib3", "typer"}
    assert heavy.isdisjoint({name.split(".")[0] for name in loaded})
