"""decide(): the ordered rules of DESIGN section 4; the first that applies decides.

Pure and total: the same observation always gives the same decision, and no observation
makes it raise. Fencing comes first, pause never suppresses it (traps 4).
"""

from __future__ import annotations

from pgha.core.decision import Decision, Rule, decision
from pgha.core.model import Observation, Policy
from pgha.core.rules_bootstrap import (
    clone_from_leader,
    race_to_initialize,
    refuse_foreign_data,
    refuse_unparsable_initialize,
    wait_for_bootstrap,
)
from pgha.core.rules_follower import elect_leader, follow
from pgha.core.rules_leader import lead
from pgha.core.rules_requests import serve_request
from pgha.core.rules_safety import (
    fence_past_deadline,
    forget_lost_key,
    paused,
    rebind_own_key,
    ride_out_store_outage,
    step_down_after_losing_key,
)
from pgha.core.rules_switchover import serve_switchover

RULES: tuple[Rule, ...] = (
    fence_past_deadline,
    rebind_own_key,
    step_down_after_losing_key,
    forget_lost_key,
    ride_out_store_outage,
    serve_request,
    paused,
    refuse_unparsable_initialize,
    refuse_foreign_data,
    race_to_initialize,
    wait_for_bootstrap,
    serve_switchover,
    lead,
    clone_from_leader,
    follow,
    elect_leader,
)


def decide(observation: Observation, policy: Policy) -> Decision:
    for rule in RULES:
        made = rule(observation, policy)
        if made is not None:
            return made
    return decision("no_rule_applies", "nothing to do in this state")  # pragma: no cover
