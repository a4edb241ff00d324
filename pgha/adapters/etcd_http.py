"""Kept-alive HTTP/1.1 connections to one etcd gateway endpoint, for its unary JSON POSTs.

Why not urllib3 or http.client for these: each of their requests runs about 570 Python
calls (header containers, timeout and retry objects, the `email` package's header parser),
which made the two etcd calls of an idle cycle about a third of the agent's idle CPU. The
gateway speaks a small fixed part of HTTP/1.1 (a status line, a few headers, a body sized
by Content-Length or sent chunked), so this reads exactly that. The watch, one long
stream, still goes through urllib3 (etcd_watch).

What the transport relies on, and this module guarantees:
- an error before any byte of the request left is `NotAppliedError` (refused, connect
  timeout, TLS handshake failure, or a TLS 1.3 server rejecting our client certificate,
  which it does before it reads any request);
- an error after the request started to leave is `NoAnswerError`: a write's outcome is
  then unknown;
- one deadline bounds the whole exchange (send, wait, read every byte), not each read;
- a kept-alive connection that the server has closed, or that has anything unread on it,
  is dropped before anything is sent on it.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pgha.adapters.etcd_answers import NoAnswerError, NotAppliedError

MAX_HEADER_LINE = 65536
MAX_HEADER_LINES = 100
MAX_BODY_BYTES = 512 * 1024 * 1024
"""etcd's own default limit on a response is far larger than any cluster prefix pgha reads;
this only stops a misbehaving server from filling memory."""
RECEIVE_BYTES = 65536
NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    body: bytes


def tls_context(ca_cert: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """Verify etcd's certificate and host name: with `ca_cert` alone when given, else with
    OpenSSL's default trust store (SSL_CERT_FILE / SSL_CERT_DIR may point it elsewhere)."""
    context = ssl.create_default_context(cafile=str(ca_cert) if ca_cert is not None else None)
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def tls_failure(exc: BaseException, ca_cert: Path | None, *, client_cert: bool) -> str:
    ca = f"the CA in {ca_cert}" if ca_cert is not None else "the system CAs"
    # etcd with --client-cert-auth just drops a client that has none: an alert, no reason.
    pair = (
        "that the client certificate and key are right"
        if client_cert
        else "whether etcd requires a client certificate (--client-cert-auth): if so, "
        "set etcd.cert and etcd.key"
    )
    return f"TLS handshake failed ({exc}); check that {ca} signed etcd's certificate and {pair}"


class _Connection:
    """One socket and what has been received on it but not yet read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.heard_back = False
        """Anything has been received on it. Until then a TLS error means the server
        rejected our handshake (TLS 1.3 checks a client certificate only after the
        client's side of the handshake is done) and never read the request."""
        self._buffer = bytearray()
        self._deadline = 0.0

    def quiet(self) -> bool:
        """Idle and still open: nothing to read (an EOF, a stray byte) and a valid socket."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable and not self._buffer

    def close(self) -> None:
        self.sock.close()

    def exchange(self, request: bytes, deadline: float) -> tuple[Answer, bool]:
        """Send `request`, read the whole answer; return it and whether the connection
        may be used again. Raises OSError (socket.timeout included) or ValueError."""
        self._deadline = deadline
        self._arm()
        self.sock.sendall(request)
        version, status, reason = self._status_line()
        headers = self._headers()
        if status in NO_BODY_STATUSES:
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunked_body()
        elif "content-length" in headers:
            body = self._exactly(_content_length(headers["content-length"]))
        else:
            body, headers["connection"] = self._until_eof(), "close"
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        return Answer(status, reason, body), keep and not self._buffer

    def _arm(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the deadline passed")
        self.sock.settimeout(remaining)

    def _read(self) -> bytes:
        """One read within the deadline; empty when the server closed the connection."""
        self._arm()
        data = self.sock.recv(RECEIVE_BYTES)
        if data:
            self.heard_back = True
        return data

    def _receive(self) -> bytes:
        if not (data := self._read()):
            raise ConnectionResetError("the server closed the connection")
        return data

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_HEADER_LINE:
                raise ValueError("a header line is too long")
            self._buffer += self._receive()
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._receive()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _until_eof(self) -> bytes:
        while data := self._read():
            self._buffer += data
            if len(self._buffer) > MAX_BODY_BYTES:
                raise ValueError("the answer is too large")
        body, self._buffer = bytes(self._buffer), bytearray()
        return body

    def _status_line(self) -> tuple[str, int, str]:
        while True:
            version, _, rest = self._line().decode("latin-1").partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
                raise ValueError(f"not an HTTP status line: {version} {rest}"[:120])
            if not code.startswith("1"):
                return version, int(code), reason.strip()
            self._headers()  # an interim 1xx answer: its headers, then the real one

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = self._line()
            if not line:
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ValueError(f"not an HTTP header: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        raise ValueError(f"more than {MAX_HEADER_LINES} header lines")

    def _chunked_body(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ValueError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while self._line():  # trailers, then the empty line
                    pass
                return b"".join(chunks)
            total += size
            if size < 0 or total > MAX_BODY_BYTES:
                raise ValueError("the answer is too large")
            chunks.append(self._exactly(size))
            if self._exactly(2) != b"\r\n":
                raise ValueError("a chunk does not end with CRLF")


def _content_length(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_BODY_BYTES:
        raise ValueError(f"bad Content-Length {text[:20]!r}")
    return int(text)


class EndpointConnections:
    """Up to `keep` idle kept-alive connections to `host`:`port`, shared by threads."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        ca_cert: Path | None = None,
        client_cert: bool = False,
        keep: int = 4,
    ) -> None:
        self.host = host
        self.port = port
        self._tls = tls
        self._ca_cert = ca_cert
        self._client_cert = client_cert
        self._keep = keep
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        host_header = f"[{host}]" if ":" in host else host
        self._host_header = f"Host: {host_header}:{port}\r\n".encode("ascii")

    def post(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> Answer:
        """POST `body` to `path`; see the module docstring for what each error means."""
        connection = self._take() or self._connect(connect_timeout)
        request = self._request(path, body, headers)
        try:
            answer, keep = connection.exchange(request, time.monotonic() + read_timeout)
        except ssl.SSLError as exc:
            connection.close()
            if not connection.heard_back:
                raise NotAppliedError(
                    tls_failure(exc, self._ca_cert, client_cert=self._client_cert)
                ) from None
            raise NoAnswerError(f"the connection broke ({exc})") from None
        except TimeoutError:
            connection.close()
            raise NoAnswerError(f"no answer within {read_timeout:.2g} s") from None
        except (OSError, ValueError) as exc:
            connection.close()
            raise NoAnswerError(f"the connection broke ({exc})") from None
        if keep:
            self._give_back(connection)
        else:
            connection.close()
        return answer

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _request(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {path} HTTP/1.1\r\n".encode("ascii"), self._host_header]
        lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n".encode("ascii"))
        lines.append(body)
        return b"".join(lines)

    def _take(self) -> _Connection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if connection.quiet():
                return connection
            connection.close()  # the server closed it, or said something unasked

    def _give_back(self, connection: _Connection) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self, timeout: float) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except TimeoutError:
            raise NotAppliedError(f"no connection within {timeout:.2g} s") from None
        except OSError as exc:
            raise NotAppliedError(f"cannot connect ({exc.strerror or exc})") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is None:
            return _Connection(sock)
        try:
            # The handshake runs within the same connect timeout, set on the socket.
            secured = self._tls.wrap_socket(sock, server_hostname=self.host)
        except TimeoutError:
            sock.close()
            raise NotAppliedError(f"no connection within {timeout:.2g} s") from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            sock.close()
            raise NotAppliedError(
                tls_failure(exc, self._ca_cert, client_cert=self._client_cert)
            ) from None
        except OSError as exc:
            sock.close()
            raise NotAppliedError(f"cannot connect ({exc.strerror or exc})") from None
        return _Connection(secured)
