"""The leader says once when synchronous replication degrades and once when it recovers,
never in every cycle; a replica says nothing."""

from __future__ import annotations

import logging

import pytest

from pgha.agent.outcome import Outcome
from pgha.agent.sync_log import SyncDegradationLog, degraded_now
from pgha.core.actions import UpdateSync
from pgha.core.model import ClusterView, SyncState

TERM = 7


def view(*standbys: str, leader: str = "n1", term: int = TERM) -> ClusterView:
    return ClusterView(revision=1, leader=None, sync=SyncState(leader, term, standbys))


def test_degraded_reads_this_cycles_write_first_and_only_this_leaders_record() -> None:
    def now(
        cluster: ClusterView, outcomes: list[Outcome] | None = None, mode: str = "on"
    ) -> tuple[bool, tuple[str, ...]] | None:
        return degraded_now(
            leading=True, mode=mode, view=cluster, outcomes=outcomes or [], me="n1", term=TERM
        )

    assert now(view()) == (True, ())
    assert now(view("n2")) == (False, ("n2",))
    assert now(view("n1", leader="n2", term=TERM - 1)) == (True, ())
    assert now(view(), [Outcome(UpdateSync(("n3",)), ok=True)]) == (False, ("n3",))
    assert now(view(), [Outcome(UpdateSync(("n3",)), ok=False)]) == (True, ())
    assert now(view("n2"), [Outcome(UpdateSync(()), ok=True)]) == (True, ())
    assert now(view(), mode="strict") == (False, ())
    assert (
        degraded_now(leading=False, mode="on", view=view(), outcomes=[], me="n1", term=None) is None
    )


def test_one_line_when_it_degrades_and_one_when_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sync_log = SyncDegradationLog()
    with caplog.at_level(logging.INFO, logger="pgha.agent"):
        for state in [(False, ("n2",)), (True, ()), (True, ()), (True, ())]:
            sync_log.note(state, "on")
        sync_log.note((False, ("n3",)), "on")
        sync_log.note((False, ("n3",)), "on")
        sync_log.note((True, ()), "on")
        sync_log.note((False, ()), "off")
        sync_log.note(None, "off")
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == [
        logging.WARNING,
        logging.INFO,
        logging.WARNING,
        logging.INFO,
    ]
    assert "degraded to asynchronous" in lines[0][1]
    assert lines[1][1] == "synchronous replication restored: commits wait for n3 again"
    assert lines[3][1] == "synchronous_mode is off now: no longer degraded to asynchronous"


def test_a_new_leadership_that_begins_degraded_says_so(caplog: pytest.LogCaptureFixture) -> None:
    sync_log = SyncDegradationLog()
    with caplog.at_level(logging.INFO, logger="pgha.agent"):
        sync_log.note((True, ()), "on")
        sync_log.note(None, "on")  # the key lost; a replica is silent
        sync_log.note(None, "on")
        sync_log.note((True, ()), "on")
    assert len([r for r in caplog.records if "degraded" in r.getMessage()]) == 2
