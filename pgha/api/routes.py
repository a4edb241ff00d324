"""Which answer each path gets, from one NodeReport: no sockets here, so every route is a
plain function call in the unit tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from pgha.adapters.store import HISTORY, Record
from pgha.api import health
from pgha.api.node_report import NodeReport
from pgha.status import cluster_document

JSON = "application/json"
MAX_QUERY_FIELDS = 8

Check = Callable[[NodeReport, int | None], str | None]
HEALTH_CHECKS: dict[str, tuple[Check, bool]] = {
    # path: (check, whether it takes ?lag=)
    "/primary": (lambda report, _: health.primary_problem(report), False),
    "/read-write": (lambda report, _: health.primary_problem(report), False),
    "/leader": (lambda report, _: health.primary_problem(report), False),
    "/replica": (health.replica_problem, True),
    "/read-only": (health.read_only_problem, True),
    "/health": (lambda report, _: health.health_problem(report), False),
    "/liveness": (lambda report, _: health.liveness_problem(report), False),
}
PATHS = (*HEALTH_CHECKS, "/cluster", "/history", "/metrics")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = JSON


def json_answer(status: int, document: Any) -> Answer:
    return Answer(status, json.dumps(document, sort_keys=True).encode() + b"\n")


def error_answer(status: int, message: str) -> Answer:
    return json_answer(status, {"error": message, "status": status})


def route(path: str, query: str, report: NodeReport) -> Answer:
    """The answer to `GET path?query` on this node."""
    if path not in PATHS:
        return error_answer(HTTPStatus.NOT_FOUND, f"no such path; try one of {', '.join(PATHS)}")
    try:
        parameters = _parameters(query)
    except ValueError as exc:
        return error_answer(HTTPStatus.BAD_REQUEST, str(exc))
    takes_lag = path in HEALTH_CHECKS and HEALTH_CHECKS[path][1]
    unknown = sorted(set(parameters) - ({"lag"} if takes_lag else set()))
    if unknown:
        return error_answer(HTTPStatus.BAD_REQUEST, f"{path} takes no parameter {unknown[0]!r}")
    if path in HEALTH_CHECKS:
        try:
            max_lag = health.parse_size(parameters["lag"]) if "lag" in parameters else None
        except ValueError as exc:
            return error_answer(HTTPStatus.BAD_REQUEST, f"lag: {exc}")
        check = HEALTH_CHECKS[path][0]
        problem = check(report, max_lag)
        status = HTTPStatus.OK if problem is None else HTTPStatus.SERVICE_UNAVAILABLE
        return json_answer(status, health.health_body(report, problem))
    if path == "/metrics":
        from pgha.api import metrics  # noqa: PLC0415 - loaded on the first scrape only

        return Answer(HTTPStatus.OK, metrics.render_metrics(report), metrics.CONTENT_TYPE)
    return _from_snapshot(path, report)


def _parameters(query: str) -> dict[str, str]:
    if not query:
        return {}
    pairs = parse_qs(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    parameters = {}
    for name, values in pairs.items():
        if len(values) != 1:
            raise ValueError(f"parameter {name[:40]!r} given {len(values)} times")
        parameters[name] = values[0]
    return parameters


def _from_snapshot(path: str, report: NodeReport) -> Answer:
    """`/cluster` and `/history`, from the snapshot the last cycle read: no etcd request per
    HTTP request; `snapshot_age_seconds` says how old it is."""
    snapshot = report.snapshot
    if snapshot is None or report.snapshot_at is None:
        return error_answer(
            HTTPStatus.SERVICE_UNAVAILABLE, "this agent has not read the cluster from etcd yet"
        )
    if path == "/history":
        history = snapshot.get(HISTORY)
        entries = history.data if isinstance(history, Record) else []
        return json_answer(HTTPStatus.OK, entries if isinstance(entries, list) else [])
    document = cluster_document(report.cluster, snapshot)
    document["snapshot_age_seconds"] = round(report.now - report.snapshot_at, 3)
    return json_answer(HTTPStatus.OK, document)
