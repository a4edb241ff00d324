"""What the agent tells systemd: READY after the first cycle, WATCHDOG=1 only while the
cycle makes progress and, on a leader, only while a watchdog kill would beat the deadline."""

from __future__ import annotations

import logging
import threading

import pytest

from pgha.adapters.store import LeaderClaim, Lease
from pgha.agent.liveness import SLOW_CYCLE_SECONDS, WATCHDOG_KILL_SECONDS, Liveness
from pgha.agent.runtime import Runtime
from pgha.agent.sd_notify import Notifier
from pgha.core.model import Policy

POLICY = Policy(
    ttl_seconds=30, loop_wait_seconds=10, retry_timeout_seconds=7, safety_margin_seconds=5
)
WATCHDOG = 15.0


class Recorder(Notifier):
    """A notifier whose datagrams land in a list instead of a socket."""

    def __init__(self, watchdog_seconds: float | None = WATCHDOG) -> None:
        usec = None if watchdog_seconds is None else int(watchdog_seconds * 1_000_000)
        super().__init__("@recorder", usec)
        self.sent: list[tuple[str, ...]] = []

    def send(self, *lines: str) -> bool:
        self.sent.append(lines)
        return True

    def pings(self) -> int:
        return sum("WATCHDOG=1" in message for message in self.sent)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(watchdog_seconds: float | None = WATCHDOG) -> tuple[Liveness, Recorder, Runtime, Clock]:
    notifier, clock = Recorder(watchdog_seconds), Clock()
    runtime = Runtime(name="pg1", safety_margin_seconds=POLICY.safety_margin_seconds)
    return Liveness(notifier, runtime, lambda: POLICY, clock), notifier, runtime, clock


def lead(runtime: Runtime, renewed_at: float) -> None:
    runtime.lease = Lease(7, int(POLICY.ttl_seconds))
    runtime.renewed(renewed_at, LeaderClaim("pg1", 5, 7))


def test_ready_goes_out_once_after_the_first_completed_cycle_and_status_only_on_change() -> None:
    liveness, notifier, _, clock = make()
    liveness.tick()
    assert notifier.sent == [], "nothing before the first cycle completed"
    liveness.cycle_completed("follow_leader: streaming from pg2")
    assert notifier.sent[0] == ("READY=1", "STATUS=follow_leader: streaming from pg2")
    clock.now += 10
    liveness.cycle_completed("follow_leader: streaming from pg2")
    clock.now += 10
    liveness.cycle_completed("take_over_expired_leader: no leader")
    statuses = [m for m in notifier.sent if m[0].startswith(("READY", "STATUS"))]
    assert statuses == [
        ("READY=1", "STATUS=follow_leader: streaming from pg2"),
        ("STATUS=take_over_expired_leader: no leader",),
    ]
    assert notifier.pings() == 3, "every healthy cycle pings"


def test_no_watchdog_no_pings_but_ready_still_goes_out() -> None:
    liveness, notifier, _, _ = make(watchdog_seconds=None)
    liveness.cycle_completed("follow_leader: ok")
    liveness.tick()
    assert notifier.sent == [("READY=1", "STATUS=follow_leader: ok")]


def test_a_stuck_leader_cycle_stops_the_pings_after_loop_wait_plus_retry_timeout() -> None:
    liveness, notifier, runtime, clock = make()
    lead(runtime, clock.now)
    liveness.cycle_completed("renew_leader: ok")
    window = POLICY.loop_wait_seconds + POLICY.retry_timeout_seconds
    # The cycle thread hangs from here on; only the main thread's tick runs.
    pings_while_progress = []
    while clock.now + 1 < 1000 + window:
        clock.now += 1
        runtime.renewed(clock.now, LeaderClaim("pg1", 5, 7))  # keep the deadline out of it
        liveness.tick()
        pings_while_progress.append(notifier.pings())
    assert pings_while_progress[-1] > 1, "the main thread repeats pings between cycles"
    clock.now = 1000 + window + 0.5
    before = notifier.pings()
    for _ in range(30):
        clock.now += 1
        liveness.tick()
    assert notifier.pings() == before, "a hung cycle must starve the watchdog"
    assert "no cycle completed" in (liveness.why_not_ping(clock.now) or "")


def test_a_replica_may_spend_minutes_in_a_clone_but_not_forever() -> None:
    liveness, notifier, runtime, clock = make()
    runtime.last_in_recovery = True
    liveness.cycle_completed("clone_from_leader: ...")
    clock.now += 600  # pg_basebackup of a large database in the next cycle
    assert liveness.why_not_ping(clock.now) is None
    clock.now = 1000 + SLOW_CYCLE_SECONDS + 1
    assert liveness.why_not_ping(clock.now) is not None
    liveness.tick()
    assert notifier.pings() == 1


def test_a_former_primary_may_spend_minutes_in_pg_rewind() -> None:
    """Killing pg_rewind half-way ruins the data directory: a node without the key is
    never held to the leader's short window, whatever its Postgres was."""
    liveness, notifier, runtime, clock = make()
    runtime.last_in_recovery = False  # it was a primary; now it rewinds to follow
    liveness.cycle_completed("rewind_to_follow: ...")
    clock.now += POLICY.loop_wait_seconds + POLICY.retry_timeout_seconds + 120
    liveness.tick()
    assert notifier.pings() == 2


def test_a_leader_whose_renewals_fail_stops_pinging_in_time_for_the_kill() -> None:
    liveness, notifier, runtime, clock = make()
    lead(runtime, clock.now)
    deadline = runtime.fencing_deadline
    assert deadline == 1000 + POLICY.ttl_seconds - POLICY.safety_margin_seconds
    liveness.cycle_completed("renew_leader: ok")
    last_ping = None
    # Cycles keep completing (etcd errors are not exceptions) but no renewal succeeds.
    while clock.now < deadline + 10:
        clock.now += 0.25
        before = notifier.pings()
        if clock.now % POLICY.loop_wait_seconds == 0:
            liveness.cycle_completed("keep_leading_until_deadline: etcd unreachable")
        else:
            liveness.tick()
        if notifier.pings() > before:
            last_ping = clock.now
    assert last_ping is not None
    # systemd kills at last ping + WatchdogSec; Postgres is gone before the deadline.
    assert last_ping + WATCHDOG + WATCHDOG_KILL_SECONDS < deadline
    # ...and no earlier than it must: at most one ping interval before the latest moment.
    assert last_ping + WATCHDOG + WATCHDOG_KILL_SECONDS >= deadline - 1.25


def test_a_watchdog_too_long_for_the_lease_is_an_error_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    liveness, notifier, runtime, clock = make(watchdog_seconds=24)
    lead(runtime, clock.now)
    with caplog.at_level(logging.ERROR, logger="pgha.agent"):
        liveness.cycle_completed("renew_leader: ok")
    assert notifier.pings() == 0
    assert "does not fit ttl" in caplog.text


def test_after_stopping_nothing_but_stopping_is_sent() -> None:
    liveness, notifier, _, clock = make()
    liveness.cycle_completed("follow_leader: ok")
    liveness.stopping()
    liveness.stopping()
    clock.now += 5
    liveness.tick()
    liveness.cycle_completed("follow_leader: ok")
    assert [m[0] for m in notifier.sent] == ["READY=1", "WATCHDOG=1", "STOPPING=1"]


def test_the_cycle_thread_and_the_main_thread_may_call_at_once() -> None:
    liveness, notifier, _, _ = make()
    liveness.cycle_completed("follow_leader: ok")

    def hammer() -> None:
        for _ in range(200):
            liveness.tick()
            liveness.cycle_completed("follow_leader: ok")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert notifier.sent[0][0] == "READY=1"
    assert all(m[0] != "READY=1" for m in notifier.sent[1:])
