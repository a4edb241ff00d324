"""The noloadbalance tag: a healthy streaming replica leaves the /replica pool (503, with
the reason) and stays in /read-only, as in Patroni."""

from __future__ import annotations

import json

from pgha.api.routes import route
from tests.unit.api.reports import report


def test_a_noloadbalance_replica_answers_503_on_replica_only() -> None:
    node = report("replica", noloadbalance=True)
    answer = route("/replica", "", node)
    assert answer.status == 503
    assert "noloadbalance" in json.loads(answer.body)["reason"]
    assert route("/replica", "lag=16MB", node).status == 503
    assert route("/read-only", "", node).status == 200
    assert route("/health", "", node).status == 200


def test_without_the_tag_the_same_replica_is_in_the_pool() -> None:
    assert route("/replica", "", report("replica")).status == 200
