"""The etcd transport's own HTTP/1.1 connections, against small loopback servers that answer
the way a gateway, a proxy or a broken server might. (Against etcd itself: the store
contract and tests/integration/test_etcd_store.py.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgha.adapters.etcd_answers import NoAnswerError, NotAppliedError
from pgha.adapters.etcd_http import EndpointConnections, tls_failure

Handler = Callable[[socket.socket], None]
JSON = {"Content-Type": "application/json"}


class Server:
    """Accepts connections on loopback and hands each to `handler` on its own thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            self.handler(client)

    def read_request(self, client: socket.socket) -> bytes | None:
        """One whole request (headers and Content-Length body), None at EOF."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += client.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        return body

    def close(self) -> None:
        self.listener.close()


OPEN: list[EndpointConnections] = []


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Server]]:
    servers: list[Server] = []

    def start(handler: Handler) -> Server:
        servers.append(Server(handler))
        return servers[-1]

    yield start
    while OPEN:
        OPEN.pop().close()
    for server in servers:
        server.close()


def connections_to(server: Server) -> EndpointConnections:
    OPEN.append(EndpointConnections("127.0.0.1", server.port, tls=None))
    return OPEN[-1]


def post(connections: EndpointConnections, body: bytes = b"{}", read: float = 2.0) -> bytes:
    answer = connections.post("/v3/kv/range", body, JSON, connect_timeout=1.0, read_timeout=read)
    assert answer.status == 200
    return answer.body


def test_sized_and_chunked_answers_are_read_whole_on_one_kept_connection(
    serve: Callable[[Handler], Server],
) -> None:
    def handler(client: socket.socket) -> None:
        server.read_request(client)
        client.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"sized":1}')
        server.read_request(client)
        client.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'4\r\n{"ch\r\n9;ext=1\r\nunked":2}\r\n0\r\nTrailer: x\r\n\r\n'
        )
        server.read_request(client)

    server = serve(handler)
    connections = connections_to(server)
    assert post(connections, b'{"a":1}') == b'{"sized":1}'
    assert post(connections) == b'{"chunked":2}'
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v3/kv/range HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}".encode() in first
    assert b"Content-Type: application/json" in first
    assert first.endswith(b'Content-Length: 7\r\n\r\n{"a":1}')


def test_a_kept_connection_the_server_closed_is_replaced_before_anything_is_sent(
    serve: Callable[[Handler], Server],
) -> None:
    def handler(client: socket.socket) -> None:
        server.read_request(client)
        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        # and close: an idle timeout, a restarted etcd

    server = serve(handler)
    connections = connections_to(server)
    assert post(connections) == b"{}"
    time.sleep(0.1)  # let the close arrive
    assert post(connections) == b"{}"  # not "the connection broke"
    assert server.connections == 2
    assert len(server.requests) == 2


def test_connection_close_and_http_1_0_are_not_kept(
    serve: Callable[[Handler], Server],
) -> None:
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\n\r\n{}",  # neither sized nor chunked: until EOF
        ]
    )

    def handler(client: socket.socket) -> None:
        while server.read_request(client) is not None:
            client.sendall(next(answers))
            if b"Content-Length" not in server.requests[-1]:
                return
            if len(server.requests) == 3:
                client.shutdown(socket.SHUT_WR)

    server = serve(handler)
    connections = connections_to(server)
    for _ in range(3):
        assert post(connections) == b"{}"
    assert server.connections == 3


def test_a_refused_connection_was_not_applied() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    connections = EndpointConnections("127.0.0.1", port, tls=None)
    with pytest.raises(NotAppliedError, match="cannot connect"):
        post(connections)


def test_a_server_that_never_answers_leaves_the_outcome_unknown(
    serve: Callable[[Handler], Server],
) -> None:
    release = threading.Event()

    def handler(client: socket.socket) -> None:
        server.read_request(client)
        release.wait(10)

    server = serve(handler)
    try:
        with pytest.raises(NoAnswerError, match=r"no answer within 0\.3 s"):
            post(connections_to(server), read=0.3)
    finally:
        release.set()


def test_one_deadline_bounds_an_answer_that_trickles_in(
    serve: Callable[[Handler], Server],
) -> None:
    """Each byte comes well within the read timeout, the whole answer does not: a timeout
    per read would wait for ever; the deadline counts the whole exchange."""
    stop = threading.Event()

    def handler(client: socket.socket) -> None:
        server.read_request(client)
        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while not stop.wait(0.05):
            try:
                client.sendall(b" ")
            except OSError:
                return

    server = serve(handler)
    try:
        with pytest.raises(NoAnswerError, match=r"no answer within 0\.5 s"):
            post(connections_to(server), read=0.5)
    finally:
        stop.set()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",  # cut short
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}",  # cut short
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # not a chunk size
        b"SSH-2.0-OpenSSH_9.2\r\n",  # not HTTP at all
        b"",  # closed without a word
    ],
)
def test_a_broken_answer_leaves_the_outcome_unknown(
    serve: Callable[[Handler], Server], answer: bytes
) -> None:
    def handler(client: socket.socket) -> None:
        server.read_request(client)
        client.sendall(answer)

    server = serve(handler)
    with pytest.raises(NoAnswerError, match="the connection broke"):
        post(connections_to(server))


def test_a_tls_failure_names_the_ca_and_the_client_certificate() -> None:
    error = OSError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    text = tls_failure(error, Path("/etc/pgha/ca.crt"), client_cert=False)
    assert "certificate verify failed" in text
    assert "/etc/pgha/ca.crt" in text
    assert "etcd.cert and etcd.key" in text
    assert "the system CAs" in tls_failure(error, None, client_cert=True)
