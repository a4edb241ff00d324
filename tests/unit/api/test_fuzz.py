"""Hostile clients against a real running API server: hypothesis sends random bytes, random
request lines and random headers over a socket, and every answer must be a 4xx, or what a
valid path answers (2xx, or 503 from a health check). Never a 5xx, never a protected
document without the token, and the server still answers /liveness afterwards. Then the
slowloris: clients that connect and send nothing, or a byte at a time, hold nobody up.
"""

from __future__ import annotations

import json
import socket
import string
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgha.api import server as api_server
from pgha.api.auth import PROTECTED_PATHS
from pgha.api.routes import HEALTH_CHECKS, PATHS
from pgha.api.server import ApiServer
from pgha.settings_api import ApiAuthSettings
from pgha.settings_base import Secret
from tests.fixtures.etcd import TlsFiles
from tests.fixtures.ports import free_port
from tests.unit.api.conftest import Serve
from tests.unit.api.reports import report
from tests.unit.api.wire import client_context, exchange, get, server_tls, status_of

TOKEN = "fuzz-token-0123456789"
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]
LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
NO_SPACE = st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x85\xa0")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """One server for every example (hypothesis runs hundreds), with a token on /cluster,
    /history and /metrics."""
    auth = ApiAuthSettings(token=Secret(TOKEN))
    api = ApiServer(f"127.0.0.1:{free_port()}", lambda: report("primary"), auth=auth)
    api.start()
    yield api.port
    api.stop()


def first_line_path(raw: bytes) -> str:
    """The path the server will see in `raw`, as http.server reads it."""
    for line in raw.split(b"\n"):
        words = line.decode("latin-1").split()
        if words:
            path = words[1] if len(words) > 1 else ""
            if path.startswith("//"):
                path = "/" + path.lstrip("/")
            return path.split("?", 1)[0].split("#", 1)[0]
    return ""


def check_answer(raw: bytes, answer: bytes, authorized: bool = False) -> None:
    if not answer:
        # Only a request made of nothing but line ends may go unanswered.
        assert raw.strip(b"\r\n") == b"", f"no answer to {raw[:200]!r}"
        return
    assert answer.startswith(b"HTTP/1.0 "), answer[:200]
    status = status_of(answer)
    path = first_line_path(raw)
    if status >= 500:
        assert status == 503, f"{raw[:200]!r} -> {answer[:300]!r}"
        assert path in HEALTH_CHECKS or path in PATHS, f"{raw[:200]!r} -> {answer[:300]!r}"
    if 200 <= status < 300 and not authorized:
        body = answer.partition(b"\r\n\r\n")[2]
        if body:  # HEAD has none; a GET's must be a health check's, never a protected document
            document = json.loads(body)
            assert isinstance(document, dict), f"{raw[:200]!r} -> {answer[:300]!r}"
            assert "role" in document, f"{raw[:200]!r} -> {answer[:300]!r}"
    assert status >= 200


def still_serving(port: int) -> None:
    assert status_of(get(port, "/liveness")) == 200


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=3000),
        st.tuples(
            st.sampled_from([b"GET /", b"HEAD /cluster", b"POST /primary HTTP/1.1\r\n", b"\r\n"]),
            st.binary(max_size=3000),
        ).map(b"".join),
    )
)
def test_random_bytes_get_a_4xx(port: int, raw: bytes) -> None:
    check_answer(raw, exchange(port, raw, half_close=True, timeout=10))


path_strategy = st.one_of(
    st.sampled_from([*PATHS, "/", "*", "//cluster", "http://[/cluster", "/cluster/", "/%2e%2e/"]),
    st.text(NO_SPACE, max_size=300).map(lambda text: "/" + text),
    st.text(NO_SPACE, min_size=1, max_size=300),
    st.tuples(st.sampled_from(PATHS), st.text(NO_SPACE, max_size=200)).map("?".join),
)
header_name = st.one_of(
    st.sampled_from(
        ["Host", "Content-Length", "Transfer-Encoding", "Authorization", "Expect", "Connection"]
    ),
    st.text(string.ascii_letters + "-_:", min_size=1, max_size=40),
    st.text(LATIN1, max_size=40),
)
header_value = st.one_of(
    st.sampled_from(["0", "5", "-1", "²", "99999999999999999999", "chunked", "100-continue"]),
    st.sampled_from([f"Bearer {TOKEN}x", "Bearer", "Basic Zm9vOmJhcg==", f"bearer {TOKEN[:-1]}"]),
    st.text(LATIN1, max_size=300),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A request line, headers and a body, each random; and whether it carries exactly the
    right token (a second Authorization header makes it ambiguous, so it is refused)."""
    method = draw(st.one_of(st.sampled_from(METHODS), st.text(NO_SPACE, min_size=1, max_size=20)))
    version = draw(st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/x", "", "1.1 x"]))
    headers = draw(st.lists(st.tuples(header_name, header_value), max_size=12))
    with_token = draw(st.booleans())
    lines = [f"{method} {draw(path_strategy)} {version}".rstrip()]
    lines += [f"{name}: {value}" for name, value in headers]
    if with_token:
        lines.append(f"Authorization: Bearer {TOKEN}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + draw(st.binary(max_size=200))
    authorized = with_token and not any(n.lower() == "authorization" for n, _ in headers)
    return raw, authorized


@FUZZ
@given(request=requests())
def test_random_requests_get_a_4xx_or_what_their_path_answers(
    port: int, request: tuple[bytes, bool]
) -> None:
    raw, authorized = request
    answer = exchange(port, raw, half_close=True, timeout=10)
    check_answer(raw, answer, authorized)
    if answer and status_of(answer) == 200 and first_line_path(raw) in PROTECTED_PATHS:
        assert authorized, f"{raw[:300]!r} was answered without the token"


def test_the_server_survived_the_fuzzing(port: int) -> None:
    still_serving(port)


@pytest.fixture(scope="module")
def tls_port(tls_files: TlsFiles) -> Iterator[int]:
    auth = ApiAuthSettings(token=Secret(TOKEN))
    address = f"127.0.0.1:{free_port()}"
    api = ApiServer(address, lambda: report("primary"), tls=server_tls(tls_files), auth=auth)
    api.start()
    yield api.port
    api.stop()


@settings(FUZZ, max_examples=100)
@given(
    raw=st.one_of(st.binary(max_size=2000), st.binary(max_size=2000).map(b"\x16\x03\x01".__add__))
)
def test_random_bytes_on_the_tls_port_get_a_400_or_nothing(tls_port: int, raw: bytes) -> None:
    answer = exchange(tls_port, raw, half_close=True, timeout=10)
    if answer.startswith(b"HTTP/"):
        assert status_of(answer) == 400
    else:  # a TLS alert or nothing: the handshake failed
        assert answer == b"" or answer.startswith(b"\x15\x03"), answer[:100]


def test_the_tls_server_survived_the_fuzzing(tls_port: int, tls_files: TlsFiles) -> None:
    assert status_of(get(tls_port, "/liveness", context=client_context(tls_files))) == 200


# --- slowloris -------------------------------------------------------------------------------


def test_clients_that_send_nothing_or_a_byte_at_a_time_hold_nobody_up(
    serving: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_server, "REQUEST_SECONDS", 1.0)
    port = serving()
    silent = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(5)]
    dripping = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        started = time.monotonic()
        for piece in b"GET /pri":  # one byte at a time, each well within any per-read timeout
            dripping.send(bytes([piece]))
            assert status_of(get(port, "/liveness")) == 200
            time.sleep(0.1)
        assert time.monotonic() - started < 5
        for connection in [*silent, dripping]:
            # Closed by the server once REQUEST_SECONDS passed: a deadline for the whole
            # request, not a timeout per read that each byte would renew.
            assert connection.recv(1024) == b""
        assert time.monotonic() - started < 10
    finally:
        for connection in [*silent, dripping]:
            connection.close()
    assert status_of(get(port, "/liveness")) == 200
