"""The HTTP server of the agent's API: a threaded server on one daemon thread, read-only.

Only GET and HEAD are served; any other method gets 405, an unknown path 404. What a client
can make it hold is bounded: the request head (line and headers) must arrive within
REQUEST_SECONDS and fit in MAX_HEAD_BYTES, a body is never accepted, at most
MAX_CONCURRENT_REQUESTS are served at once (the next ones get an immediate 503), and every
connection closes after one answer. A malformed or hostile request gets a 4xx and costs one
short-lived thread; the server keeps serving.

With `api.tls` it speaks HTTPS only; the handshake runs on the connection's worker thread
within TLS_HANDSHAKE_SECONDS (tls.py). With `api.auth`, /cluster, /history and /metrics need
credentials (auth.py); the health checks never do.

Idle, it costs nothing: its thread blocks in accept() until a request or `stop()`, which
wakes it by connecting to it.
"""

from __future__ import annotations

import http.client
import io
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

from pgha.api.auth import ApiAuth, Refusal
from pgha.api.node_report import NodeReport
from pgha.api.routes import Answer, error_answer, route
from pgha.api.tls import accept_tls, client_certificate_verified, server_context
from pgha.errors import ConfigError, PghaError
from pgha.settings_api import ApiAuthSettings, ApiTlsSettings
from pgha.settings_base import split_address

log = logging.getLogger("pgha.api")

MAX_REQUEST_LINE_BYTES = 2048
MAX_HEAD_BYTES = 16 * 1024
MAX_DRAINED_BODY_BYTES = 64 * 1024
"""A small unwanted body is read and dropped, so the client sees our 4xx, not a reset."""
REQUEST_SECONDS = 5.0
"""The whole request must arrive within this: a slow client cannot hold a thread longer."""
RESPONSE_SECONDS = 5.0
TLS_HANDSHAKE_SECONDS = 5.0
"""The TLS handshake must finish within this, before the request's own REQUEST_SECONDS."""
MAX_EMPTY_LINES = 8
"""Empty lines skipped before a request line (RFC 9112, 2.2); more is a malformed request."""
MAX_CONCURRENT_REQUESTS = 16
ALLOWED_METHODS = ("GET", "HEAD")
_BUSY = "HTTP/1.0 503 Service Unavailable\r\nX-Pgha-Term: {term}\r\nContent-Length: 0\r\n\r\n"


class ApiUnavailable(PghaError):
    """The HTTP API cannot start: its address, certificate, key or token is unusable."""


class _RequestReader:
    """The client's bytes, at most `budget` of them, all before `deadline` (monotonic)."""

    def __init__(self, raw: io.BufferedIOBase, connection: socket.socket, deadline: float) -> None:
        self.raw = raw
        self.connection = connection
        self.deadline = deadline
        self.budget = MAX_HEAD_BYTES

    def _arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.connection.settimeout(remaining)

    def readline(self, limit: int = -1) -> bytes:
        self._arm()
        wanted = self.budget + 1 if limit < 0 else min(limit, self.budget + 1)
        line = self.raw.readline(wanted)
        self.budget -= len(line)
        if self.budget < 0:
            # http.server answers this with 431 while it reads the headers.
            raise http.client.LineTooLong(f"request head longer than {MAX_HEAD_BYTES} bytes")
        return line

    def read(self, size: int) -> bytes:
        chunks, left = [], size
        while left > 0:
            self._arm()
            chunk = self.raw.read1(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    server_version = "pgha"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        deadline = time.monotonic() + REQUEST_SECONDS
        self.rfile = cast(io.BufferedIOBase, _RequestReader(self.rfile, self.connection, deadline))

    def handle_one_request(self) -> None:
        self.close_connection = True
        self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
        try:
            line = self.rfile.readline(MAX_REQUEST_LINE_BYTES + 1)
            for _ in range(MAX_EMPTY_LINES):
                if line not in (b"\r\n", b"\n"):
                    break
                line = self.rfile.readline(MAX_REQUEST_LINE_BYTES + 1)
            if not line:
                return
            if len(line) > MAX_REQUEST_LINE_BYTES:
                limit = MAX_REQUEST_LINE_BYTES
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, f"request line over {limit} bytes")
                return
            if not str(line, "iso-8859-1").split():  # parse_request would close without a word
                self.send_error(HTTPStatus.BAD_REQUEST, "empty request line")
                return
            self.raw_requestline = line
            if self.parse_request():  # answers malformed requests itself (400, 431)
                self._serve()
        except TimeoutError:
            log.debug("HTTP API: %s sent no complete request in time", self.client_address[0])
        except OSError as exc:  # the client went away
            log.debug("HTTP API: connection from %s: %s", self.client_address[0], exc)

    def _serve(self) -> None:
        body = self._drop_body()
        if self.command not in ALLOWED_METHODS:
            allowed = ", ".join(ALLOWED_METHODS)
            message = f"this API is read-only: {allowed} only"
            answer = error_answer(HTTPStatus.METHOD_NOT_ALLOWED, message)
            self._send(answer, self.server.current_term(), {"Allow": allowed})
            return
        if body is None:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request bodies are not accepted")
            return
        if body:
            self.send_error(HTTPStatus.BAD_REQUEST, f"a {self.command} request carries no body")
            return
        try:
            target = urlsplit(self.path)
        except ValueError:  # e.g. an absolute URL with a broken [IPv6] host
            self.send_error(HTTPStatus.BAD_REQUEST, "the request target is not a valid URL")
            return
        refusal = self.server.auth.refusal(
            target.path,
            self.headers.get_all("Authorization") or [],
            client_certificate_verified(self.connection),
        )
        if refusal is not None:
            self._refuse(refusal)
            return
        term: int | None = None
        try:
            report = self.server.read_report()
            answer, term = route(target.path, target.query, report), report.term
        except Exception:  # a bug must cost one answer, never the server
            log.exception("HTTP API: %s %s failed", self.command, self.path[:200])
            answer = error_answer(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the log")
        self._send(answer, term)

    def _refuse(self, refusal: Refusal) -> None:
        # One line per refusal, for whoever watches for probing; never the credential itself.
        client = self.client_address[0]
        log.warning("HTTP API: refused %s from %s: %s", self.command, client, refusal.reason)
        extra = {"WWW-Authenticate": refusal.challenge} if refusal.challenge else None
        self._send(error_answer(refusal.status, refusal.reason), None, extra)

    def _drop_body(self) -> int | None:
        """Read and drop a small body; its length (0 without one), None if it is too large,
        chunked or its length unreadable."""
        if self.headers.get("Transfer-Encoding") is not None:
            return None
        length = self.headers.get("Content-Length")
        if length is None:
            return 0
        length = length.strip()
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses.
        if not (length.isascii() and length.isdigit()) or len(length) > 9:
            return None
        if int(length) > MAX_DRAINED_BODY_BYTES:
            return None
        return len(self.rfile.read(int(length)))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        message = message or HTTPStatus(code).phrase
        if code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            # The client's mistake, and a 5xx would read as this server failing: 400.
            code, message = HTTPStatus.BAD_REQUEST, f"{message}: this API speaks HTTP/1.x"
        self._send(error_answer(code, message), None)

    def _send(self, answer: Answer, term: int | None, extra: dict[str, str] | None = None) -> None:
        if term is None:
            term = self.server.current_term()
        # Nobody speaks HTTP/0.9 (no status line): garbage that parses as it gets a real 4xx.
        self.request_version = "HTTP/1.0"
        self.connection.settimeout(RESPONSE_SECONDS)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Pgha-Term", str(term))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("HTTP API: %s %s", self.client_address[0], format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        read_report: Callable[[], NodeReport],
        tls: ssl.SSLContext | None = None,
        auth: ApiAuth | None = None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.read_report = read_report
        self.tls = tls
        self.auth = auth or ApiAuth()
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks our own name up in DNS; we have no use for it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def current_term(self) -> int:
        try:
            return self.read_report().term
        except Exception:  # the term is a courtesy on error answers; never fail them for it
            return 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            if self.tls is None:  # a TLS client could not read a plain answer: just close
                _refuse_busy(request, self.current_term())
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """On the worker thread: the TLS handshake first, when the API speaks TLS."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        client = str(client_address[0])
        secured = accept_tls(request, self.tls, client, TLS_HANDSHAKE_SECONDS)
        if secured is None:
            return
        try:
            super().finish_request(secured, client_address)
        finally:
            self.shutdown_request(secured)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("HTTP API: error serving %s", client_address, exc_info=True)


def _refuse_busy(request: socket.socket, term: int) -> None:
    try:
        request.setblocking(False)
        request.send(_BUSY.format(term=term).encode())
    except OSError:
        pass


class ApiServer:
    """The agent's HTTP API on `listen` (host:port), answering from `read_report()`; over
    HTTPS with `tls`, and asking for the credentials `auth` names on the protected paths."""

    def __init__(
        self,
        listen: str,
        read_report: Callable[[], NodeReport],
        *,
        tls: ApiTlsSettings | None = None,
        auth: ApiAuthSettings | None = None,
    ) -> None:
        self.listen = listen
        self.read_report = read_report
        self.tls = tls or ApiTlsSettings()
        self.auth = auth or ApiAuthSettings()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        assert self._server is not None, "the API server is not started"
        return self._server.server_port

    def start(self) -> None:
        """Bind and serve; raises ApiUnavailable when the address cannot be listened on or the
        certificate, key or token cannot be used."""
        host, port = split_address(self.listen)
        try:
            context, auth = server_context(self.tls), ApiAuth.load(self.auth)
        except ConfigError as exc:
            raise ApiUnavailable(f"the HTTP API cannot start: {'; '.join(exc.problems)}") from None
        try:
            self._server = _Server((host, port), self.read_report, context, auth)
        except OSError as exc:
            raise ApiUnavailable(
                f"the HTTP API cannot listen on {self.listen} ({exc.strerror or exc}); "
                "set api.listen to a free address of this host"
            ) from None
        self._thread = threading.Thread(target=self._serve, name="pgha-api", daemon=True)
        self._thread.start()
        log.info("HTTP API listening on %s", self._describe(context, auth))

    def _describe(self, context: ssl.SSLContext | None, auth: ApiAuth) -> str:
        if context is None:
            where = f"http://{self.listen}"
        else:
            where = f"https://{self.listen} (client certificates: {self.tls.verify_client})"
        protected = "need credentials" if auth.required else "are open (no api.auth)"
        return f"{where}; /cluster, /history and /metrics {protected}"

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        while not self._stopping.is_set():
            server.handle_request()  # blocks until a connection arrives

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        self._wake(server)
        thread.join(timeout=2)
        server.server_close()
        self._server = self._thread = None

    def _wake(self, server: _Server) -> None:
        host = server.server_name
        if host in ("0.0.0.0", ""):  # noqa: S104 - the wildcard, reached through loopback
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        try:
            with socket.create_connection((host, server.server_port), timeout=1):
                pass
        except OSError as exc:
            log.debug("HTTP API: could not wake the server thread (%s); it is a daemon", exc)
