"""A rejected key is logged once when it appears or changes, and once when it clears."""

from __future__ import annotations

import logging

import pytest

from pgha.agent.problem_log import ProblemLog, Problems

LOGGER = "pgha.test.problem_log"


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_each_rejection_is_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    problems = ProblemLog(logging.getLogger(LOGGER))
    garbage = {"config": "ttl has the wrong type (str)"}

    for _ in range(5):
        problems.update(garbage)
    assert lines(caplog) == [
        (logging.WARNING, "cluster store: key 'config': ttl has the wrong type (str)")
    ]

    caplog.clear()
    problems.update({"config": "expected a JSON object"})
    problems.update({"config": "expected a JSON object"})
    assert lines(caplog) == [
        (logging.WARNING, "cluster store: key 'config': expected a JSON object")
    ]

    caplog.clear()
    for _ in range(3):
        problems.update({})
    assert lines(caplog) == [(logging.INFO, "cluster store: key 'config' is readable again")]


def test_keys_are_tracked_separately(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    problems = ProblemLog(logging.getLogger(LOGGER))
    problems.update({"history": "a", "members/n2": "b"})
    problems.update({"history": "a"})
    problems.update({"history": "a", "members/n2": "b"})
    assert [text for _, text in lines(caplog)] == [
        "cluster store: key 'history': a",
        "cluster store: key 'members/n2': b",
        "cluster store: key 'members/n2' is readable again",
        "cluster store: key 'members/n2': b",
    ]


def test_problems_join_what_several_parsers_say_about_one_key() -> None:
    found = Problems()
    found.on("sync").append("expected a JSON object")
    found.on("sync").append("no automatic promotion")
    found.on("config")  # asked for, nothing wrong
    assert found.by_key() == {"sync": "expected a JSON object; no automatic promotion"}
