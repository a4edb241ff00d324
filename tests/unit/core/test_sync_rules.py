"""Synchronous mode in the core: the leader's one step per cycle, and who may be promoted."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgha.core.actions import (
    AcquireLeader,
    Action,
    AppendHistory,
    Promote,
    RenewLeader,
    RunPrePromoteHook,
    SetSyncStandbys,
    UpdateSync,
)
from pgha.core.decide import decide
from pgha.core.model import (
    ClusterView,
    LocalPostgres,
    Observation,
    Policy,
    StandbyFeed,
    SyncState,
    Tags,
)
from pgha.core.sync import PLACEHOLDER, parse_names, render_names
from tests.unit.core.builders import (
    POLICY,
    MiB,
    as_leader,
    assert_plan,
    cluster,
    leaderless,
    member,
    my_key,
    observe,
    primary,
    replica,
)

ON = replace(POLICY, synchronous_mode="on")
STRICT = replace(POLICY, synchronous_mode="strict")
BASE = 100 * MiB


def feed(
    name: str, sync_state: str = "async", flush: int = BASE, streaming: bool = True
) -> StandbyFeed:
    return StandbyFeed(name, streaming, sync_state, flush)


def leading(
    standbys: tuple[str, ...] | None = (),
    names: tuple[str, ...] | None = (),
    feeds: tuple[StandbyFeed, ...] = (feed("pg2"), feed("pg3")),
    baselines: dict[str, int] | None = None,
    **view: object,
) -> Observation:
    """pg1 leads in term 60 with these sync standbys (None: no sync key) and names listed."""
    sync = SyncState("pg1", 60, standbys) if standbys is not None else None
    members = {"pg1": member("pg1"), "pg2": member("pg2"), "pg3": member("pg3")}
    defaults: dict[str, object] = {"leader": my_key(), "sync": sync, "members": members}
    defaults.update(view)
    local = primary(standbys=feeds, sync_names=names)
    return observe(local, cluster(**defaults), as_leader(sync_baselines=baselines or {}))


Case = tuple[str, Observation, Policy, str, tuple[type[Action] | Action, ...]]
CASES: list[Case] = [
    (
        "a new leader records its own empty sync set first",
        leading(standbys=None),
        ON,
        "manage_sync_standbys",
        (RenewLeader(), UpdateSync(())),
    ),
    (
        "an old leader's sync record is replaced, not extended",
        leading(sync=SyncState("pg2", 50, ("pg1", "pg3"))),
        STRICT,
        "manage_sync_standbys",
        (RenewLeader(), UpdateSync(())),
    ),
    (
        "list a streaming standby below the count, first by name",
        leading(),
        ON,
        "manage_sync_standbys",
        (RenewLeader(), SetSyncStandbys(("pg2",))),
    ),
    (
        "nofailover standbys are picked last",
        leading(
            members={
                "pg1": member("pg1"),
                "pg2": member("pg2", tags=Tags(nofailover=True)),
                "pg3": member("pg3"),
            }
        ),
        ON,
        "manage_sync_standbys",
        (RenewLeader(), SetSyncStandbys(("pg3",))),
    ),
    (
        "nosync standbys are never picked",
        leading(
            feeds=(feed("pg2"),),
            members={"pg1": member("pg1"), "pg2": member("pg2", tags=Tags(nosync=True))},
        ),
        ON,
        "renew_as_primary",
        (RenewLeader(),),
    ),
    (
        "a listed standby joins sync once synchronous and past its baseline",
        leading(names=("pg2",), feeds=(feed("pg2", "sync", BASE + 10),), baselines={"pg2": BASE}),
        ON,
        "manage_sync_standbys",
        (RenewLeader(), UpdateSync(("pg2",))),
    ),
    (
        "synchronous but short of the baseline: not yet",
        leading(names=("pg2",), feeds=(feed("pg2", "sync", BASE - 1),), baselines={"pg2": BASE}),
        ON,
        "renew_as_primary",
        (RenewLeader(),),
    ),
    (
        "no baseline (agent restarted): take it again",
        leading(names=("pg2",), feeds=(feed("pg2", "sync"),)),
        ON,
        "manage_sync_standbys",
        (RenewLeader(), SetSyncStandbys(("pg2",))),
    ),
    (
        "on: a sync standby that left goes out of sync first",
        leading(standbys=("pg2",), names=("pg2",), feeds=()),
        ON,
        "manage_sync_standbys",
        (RenewLeader(), UpdateSync(())),
    ),
    (
        "on: then out of the names: degraded to asynchronous",
        leading(standbys=(), names=("pg2",), feeds=()),
        ON,
        "manage_sync_standbys",
        (RenewLeader(), SetSyncStandbys(())),
    ),
    (
        "strict: the last sync standby stays while nobody else streams",
        leading(standbys=("pg2",), names=("pg2",), feeds=()),
        STRICT,
        "renew_as_primary",
        (RenewLeader(),),
    ),
    (
        "strict: a replacement is listed next to the departed one",
        leading(standbys=("pg2",), names=("pg2",), feeds=(feed("pg3"),)),
        STRICT,
        "manage_sync_standbys",
        (RenewLeader(), SetSyncStandbys(("pg2", "pg3"), strict=True)),
    ),
    (
        "strict: once the replacement is in sync, the departed one leaves sync",
        leading(standbys=("pg2", "pg3"), names=("pg2", "pg3"), feeds=(feed("pg3", "sync"),)),
        STRICT,
        "manage_sync_standbys",
        (RenewLeader(), UpdateSync(("pg3",))),
    ),
    (
        "strict with nobody: a placeholder makes writes wait",
        leading(feeds=()),
        STRICT,
        "manage_sync_standbys",
        (RenewLeader(), SetSyncStandbys((), strict=True)),
    ),
    (
        "strict with the placeholder listed: settled",
        leading(feeds=(), names=(PLACEHOLDER,)),
        STRICT,
        "renew_as_primary",
        (RenewLeader(),),
    ),
    (
        "a value pgha did not write is replaced",
        leading(standbys=("pg2",), names=None),
        ON,
        "manage_sync_standbys",
        (RenewLeader(), SetSyncStandbys(("pg2",))),
    ),
    (
        "off: the sync key goes first",
        leading(standbys=("pg2",), names=("pg2",)),
        POLICY,
        "manage_sync_standbys",
        (RenewLeader(), UpdateSync(None)),
    ),
    (
        "off: then the names",
        leading(standbys=None, names=("pg2",)),
        POLICY,
        "manage_sync_standbys",
        (RenewLeader(), SetSyncStandbys(())),
    ),
    (
        "off and nothing listed: nothing to do",
        leading(standbys=None),
        POLICY,
        "renew_as_primary",
        (RenewLeader(),),
    ),
    (
        "paused: the sync set is left alone",
        leading(standbys=None, paused=True),
        ON,
        "paused",
        (RenewLeader(),),
    ),
]


@pytest.mark.parametrize(
    ("name", "obs", "policy", "code", "plan"), CASES, ids=[c[0] for c in CASES]
)
def test_sync_steps(
    name: str, obs: Observation, policy: Policy, code: str, plan: tuple[type[Action] | Action, ...]
) -> None:
    made = decide(obs, policy)
    assert_plan(made, code, plan)
    assert made.reason


def candidates(sync: SyncState | None, **view: object) -> ClusterView:
    return leaderless(sync=sync, **view)


def verdict(view: ClusterView, policy: Policy, local: LocalPostgres | None = None) -> str:
    return decide(observe(local or replica(), view), policy).code


def test_only_a_sync_standby_may_take_over_in_synchronous_mode() -> None:
    # pg1 is the best by position and name, but only pg3 was synchronous.
    view = candidates(SyncState("pg2", 50, ("pg3",)))
    made = decide(observe(replica(), view), ON)
    assert made.code == "not_eligible"
    assert "not a synchronous standby (sync standbys of pg2: pg3)" in made.reason
    assert verdict(candidates(SyncState("pg2", 50, ("pg1",))), ON) == "take_over_expired_leader"


def test_the_leader_named_in_sync_may_lead_again_after_a_degraded_period() -> None:
    assert verdict(candidates(SyncState("pg1", 50, ())), ON) == "take_over_expired_leader"


def test_no_sync_key_or_an_unreadable_one_means_no_automatic_promotion() -> None:
    missing = decide(observe(replica(), candidates(None)), STRICT)
    assert missing.code == "not_eligible"
    assert "no automatic promotion" in missing.reason
    garbage = decide(observe(replica(), candidates(None, sync_unreadable=True)), ON)
    assert "sync key is unreadable" in garbage.reason


def test_a_non_sync_peer_ahead_is_no_rival() -> None:
    view = candidates(SyncState("pg2", 50, ("pg1",)))
    # pg3 is ahead in leaderless() but not synchronous: pg1 takes over.
    ahead = replace(view.members["pg3"], position=200 * MiB)
    view = replace(view, members={**view.members, "pg3": ahead}, last_primary_position=None)
    assert verdict(view, ON) == "take_over_expired_leader"


def test_asynchronous_mode_ignores_the_sync_key() -> None:
    # pg1 is the best candidate; only synchronous mode would hold it back.
    assert verdict(candidates(SyncState("pg2", 50, ("pg3",))), POLICY) == (
        "take_over_expired_leader"
    )


def test_promotion_in_synchronous_mode_resets_the_names_before_promoting() -> None:
    view = candidates(SyncState("pg2", 50, ("pg1",)))
    made = decide(observe(replica(), view), STRICT)
    assert_plan(
        made,
        "take_over_expired_leader",
        (
            AcquireLeader(),
            RunPrePromoteHook(),
            SetSyncStandbys((), strict=True),
            Promote(),
            AppendHistory,
        ),
    )


def test_names_render_and_parse_back() -> None:
    assert render_names(("pg2", "pg3"), strict=False) == 'FIRST 2 ("pg2", "pg3")'
    assert render_names((), strict=False) == ""
    assert render_names((), strict=True) == f'FIRST 1 ("{PLACEHOLDER}")'
    assert parse_names('FIRST 2 ("pg2", "pg3")') == ("pg2", "pg3")
    assert parse_names("") == ()
    assert parse_names("*") is None
    assert parse_names('ANY 1 ("pg2")') is None
    assert parse_names('FIRST 1 ("pg2", "pg3")') is None


@given(
    st.lists(st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True), max_size=4, unique=True),
    st.booleans(),
)
def test_every_rendered_value_parses_back_to_its_names(names: list[str], strict: bool) -> None:
    parsed = parse_names(render_names(tuple(names), strict))
    if names:
        assert parsed == tuple(names)
    else:
        assert parsed == ((PLACEHOLDER,) if strict else ())
