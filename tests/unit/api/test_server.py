"""The API server on a real loopback socket: read-only, bounded, and still serving after
whatever a client sends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from pgha.api import server as api_server
from pgha.api.node_report import NodeReport
from pgha.api.server import ApiServer, ApiUnavailable
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import wait_until
from tests.unit.api.reports import TERM, report
from tests.unit.api.wire import exchange, get, status_of


def test_get_and_head_answer_with_the_term(serving: Callable[..., int]) -> None:
    port = serving()
    answer = get(port, "/primary")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status_of(answer) == 200
    assert f"X-Pgha-Term: {TERM}".encode() in head
    assert b"Content-Type: application/json" in head
    assert b'"role": "primary"' in body
    headed = get(port, "/primary", "HEAD")
    assert status_of(headed) == 200
    assert headed.endswith(b"\r\n\r\n")  # no body
    assert status_of(get(port, "/replica")) == 503
    assert status_of(get(port, "/nope")) == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"])
def test_nothing_but_get_and_head(serving: Callable[..., int], method: str) -> None:
    port = serving()
    answer = get(port, "/primary", method, b"Content-Length: 5\r\n\r\nhello")
    assert status_of(answer) == 405
    assert b"Allow: GET, HEAD" in answer
    assert f"X-Pgha-Term: {TERM}".encode() in answer


def test_malformed_and_oversized_requests_get_4xx_and_the_server_keeps_serving(
    serving: Callable[..., int],
) -> None:
    port = serving()
    huge_header = b"X-Junk: " + b"a" * 100_000 + b"\r\n"
    many_headers = b"".join(b"X-%d: y\r\n" % i for i in range(3000))
    cases = {
        b"\x00\x01\x02 garbage\r\n\r\n": 400,
        b"GET /primary HTTP/9.9\r\n\r\n": 400,  # a client's mistake: never a 5xx
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n": 414,
        b"GET /primary HTTP/1.1\r\n" + huge_header + b"\r\n": 431,
        b"GET /primary HTTP/1.1\r\n" + many_headers + b"\r\n": 431,
        b"GET /primary HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n": 413,
        b"GET /primary HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n": 413,
        b"GET /primary HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello": 400,
        b"GET /primary HTTP/1.1\r\nContent-Length: -5\r\n\r\n": 413,
        b"GET /primary?lag=%ZZ HTTP/1.1\r\n\r\n": 400,
        b"GET /cluster?\xff\xfe=1 HTTP/1.1\r\n\r\n": 400,
        "GET /primary HTTP/1.1\r\nContent-Length: ²\r\n\r\n".encode("latin-1"): 413,
        b"GET /primary HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n": 413,
        b"GET http://[/cluster HTTP/1.1\r\n\r\n": 400,
        b" \xa0\r\n\r\n": 400,
        b"\r\n\r\nGET /primary HTTP/1.1\r\n\r\n": 200,  # empty lines first are allowed
        b"\r\n" * 20 + b"GET /primary HTTP/1.1\r\n\r\n": 400,  # but not without end
    }
    for request, expected in cases.items():
        answer = exchange(port, request)
        assert answer, f"no answer to {request[:40]!r}"
        assert status_of(answer) == expected, f"{request[:60]!r} -> {answer[:120]!r}"
    assert status_of(get(port, "/primary")) == 200


def test_a_slow_client_is_cut_off_and_others_are_served_meanwhile(
    serving: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_server, "REQUEST_SECONDS", 0.5)
    port = serving()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
        slow.sendall(b"GET /primary HTTP/1.1\r\n")  # and never the rest
        assert status_of(get(port, "/health")) == 200
        assert slow.recv(1024) == b""  # closed by the server, not by our timeout
    assert status_of(get(port, "/health")) == 200


def test_connections_beyond_the_limit_get_503_at_once(
    serving: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_server, "MAX_CONCURRENT_REQUESTS", 3)
    port = serving()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
    try:
        busy = get(port, "/primary")
        assert status_of(busy) == 503
        assert f"X-Pgha-Term: {TERM}".encode() in busy
    finally:
        for connection in idle:
            connection.close()

    wait_until(lambda: status_of(get(port, "/primary")) == 200, what="the slots are free again")


def test_a_failing_report_costs_one_answer_not_the_server(serving: Callable[..., int]) -> None:
    calls = threading.Semaphore(1)

    def flaky() -> NodeReport:
        if calls.acquire(blocking=False):
            raise RuntimeError("boom")
        return report("replica")

    port = serving(flaky)
    assert status_of(get(port, "/health")) == 500
    assert status_of(get(port, "/health")) == 200


def test_an_address_in_use_is_a_clear_error(serving: Callable[..., int]) -> None:
    port = serving()
    with pytest.raises(ApiUnavailable, match=r"cannot listen on 127\.0\.0\.1:\d+.*api\.listen"):
        ApiServer(f"127.0.0.1:{port}", report).start()


def test_stop_closes_the_port() -> None:
    api = ApiServer(f"127.0.0.1:{free_port()}", report)
    api.start()
    port = api.port
    api.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
