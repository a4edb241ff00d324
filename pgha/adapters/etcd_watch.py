"""A watch on the `leader` key that wakes the agent's loop early when the key changes.

It is only an optimisation: each cycle re-reads the whole cluster, so a broken watch costs
early wake-ups, never correctness. What it must never do is hang its caller or die silently,
which is why it does not use etcd3gw's `Watcher` (no timeout on its request, errors lost in
a thread pool, a session shared with the cycle thread). Instead:
- it streams `POST /v3/watch` on its own connection pool, in its own thread;
- connecting and waiting for etcd's first answer are bounded by the store timeout;
- with `progress_notify` on, etcd sends a message at least every progress interval, so a
  stream silent for twice that long is treated as dead (a frozen or cut-off member);
- after any failure it re-creates the watch on the next endpoint with a growing backoff,
  and calls `on_change` once when the new watch is confirmed, since changes may have been
  missed meanwhile;
- `stop()` shuts the socket down under the blocked read and joins the thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import urllib3

from pgha.adapters.etcd_client import JSON_HEADERS, EtcdTransport, b64, unb64

log = logging.getLogger(__name__)

HTTP_OK = 200
BACKOFF_MIN_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0


class WatchBrokenError(Exception):
    """The watch stream failed or etcd cancelled it; the watch is re-created."""


class WatchSilentError(WatchBrokenError):
    """Nothing came for twice the progress interval: the member may be frozen or cut off."""


class LeaderWatch:
    """Calls `on_change` from its own thread whenever the watched key changes."""

    def __init__(
        self,
        transport: EtcdTransport,
        key: str,
        on_change: Callable[[], None],
        *,
        progress_interval_seconds: float,
    ) -> None:
        self.key = key
        self._transport = transport
        self._on_change = on_change
        self._silence_seconds = 2 * progress_interval_seconds
        self._pool = transport.new_pool()
        self._stopping = threading.Event()
        self._first_confirmed = threading.Event()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._confirmed_once = False
        self._announce_on_confirm = False
        self._index = transport.preferred_index
        self.confirmations = 0
        """How many times etcd confirmed a (re-)created watch; for diagnosis and tests."""
        self._thread = threading.Thread(target=self._run, name="pgha-leader-watch", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def start(self, wait_seconds: float) -> None:
        """Start the thread and wait up to `wait_seconds` for etcd to confirm the watch."""
        self._thread.start()
        self._first_confirmed.wait(wait_seconds)
        with self._lock:
            if not self._confirmed_once:
                # Changes made from now until the watch exists would be missed: report one.
                self._announce_on_confirm = True

    def stop(self) -> None:
        """End the watch promptly: unblock its read and wait for its thread."""
        self._stopping.set()
        with self._lock:
            sock = self._socket
        if sock is not None:
            _shutdown(sock)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            # At worst the thread is connecting or waiting for etcd's first answer, both
            # bounded by the store timeout.
            self._thread.join(2 * self._transport.timeout + 1)
            if self._thread.is_alive():
                log.warning("watch on %s did not stop in time; leaving its thread", self.key)

    def _run(self) -> None:
        backoff = BACKOFF_MIN_SECONDS
        while not self._stopping.is_set():
            endpoint = self._transport.endpoints[self._index]
            confirmed_before = self.confirmations
            level = logging.WARNING
            try:
                self._stream()
                problem = "etcd ended the stream"
            except WatchSilentError as exc:
                # Routine where etcd runs with its default 10 min progress interval.
                level, problem = logging.INFO, str(exc)
            except Exception as exc:  # any failure only costs early wake-ups
                problem = _describe(exc)
            if self._stopping.is_set():
                break
            if self.confirmations > confirmed_before:
                backoff = BACKOFF_MIN_SECONDS  # it worked for a while: retry quickly
            with self._lock:
                self._announce_on_confirm = True
            log.log(
                level,
                "watch on %s via %s ended: %s; re-creating it in %.1f s (the loop still "
                "re-reads etcd every cycle)",
                self.key,
                endpoint,
                problem,
                backoff,
            )
            self._index = (self._index + 1) % len(self._transport.endpoints)
            if self._stopping.wait(backoff):
                break
            backoff = min(2 * backoff, BACKOFF_MAX_SECONDS)
        self._pool.clear()

    def _stream(self) -> None:
        headers = self._transport.auth_headers()
        body = {"create_request": {"key": b64(self.key), "progress_notify": True}}
        timeout = self._transport.timeout
        try:
            response = self._pool.request(
                "POST",
                self._transport.url(self._index, "/watch"),
                body=json.dumps(body).encode(),
                headers={**headers, **JSON_HEADERS},
                preload_content=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
            )
        except urllib3.exceptions.NewConnectionError:
            raise  # refused or unroutable: reported as it is
        except urllib3.exceptions.TimeoutError:
            raise WatchBrokenError(
                f"etcd did not answer the watch request in {timeout:g} s"
            ) from None
        try:
            if not self._adopt_socket(response):
                return
            if response.status != HTTP_OK:
                raise WatchBrokenError(f"HTTP {response.status}: {response.read(200)!r}")
            # Each chunk the gateway sends as it comes: a whole message, or part of one.
            for line in iter_lines(response.stream(None)):
                self._handle(json.loads(line), headers.get("Authorization"))
                if self._stopping.is_set():
                    return
        except urllib3.exceptions.ReadTimeoutError:
            raise WatchSilentError(
                f"no message for {self._silence_seconds:g} s, though progress "
                "notifications were requested"
            ) from None
        finally:
            with self._lock:
                self._socket = None
            response.close()

    def _adopt_socket(self, response: urllib3.BaseHTTPResponse) -> bool:
        """Lengthen the read timeout to the silence limit and let stop() reach the socket."""
        connection = getattr(response, "connection", None)
        sock = getattr(connection, "sock", None)
        if not isinstance(sock, socket.socket):
            raise WatchBrokenError("cannot reach the stream's socket to bound its silence")
        with self._lock:
            if self._stopping.is_set():
                return False
            self._socket = sock
        sock.settimeout(self._silence_seconds)
        return True

    def _handle(self, message: Any, token: str | None) -> None:
        if not isinstance(message, dict):
            raise WatchBrokenError(f"unexpected message {message!r}")
        if "error" in message:
            error = message["error"]
            text = error.get("message", error) if isinstance(error, dict) else error
            self._forget_token_if_auth(str(text), token)
            raise WatchBrokenError(f"etcd error: {text}")
        result = message.get("result", {})
        if result.get("canceled"):
            reason = str(result.get("cancel_reason") or "no reason given")
            self._forget_token_if_auth(reason, token)
            raise WatchBrokenError(f"etcd cancelled the watch: {reason}")
        if result.get("created"):
            self._confirm()
        for event in result.get("events", []):
            if unb64(event.get("kv", {}).get("key", "")) == self.key:
                self._notify()

    def _forget_token_if_auth(self, text: str, token: str | None) -> None:
        # An expired token shows up on a watch as "permission denied": authenticate again.
        if "auth token" in text or "permission denied" in text:
            self._transport.forget_token(token)

    def _confirm(self) -> None:
        with self._lock:
            self._confirmed_once = True
            announce, self._announce_on_confirm = self._announce_on_confirm, False
            self.confirmations += 1
        self._first_confirmed.set()
        if announce:
            self._notify()

    def _notify(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("on_change callback of the watch on %s failed; watch goes on", self.key)


def _shutdown(sock: socket.socket) -> None:
    # Shut down a duplicate of the descriptor: it acts on the shared connection (so the
    # blocked read returns) without touching the TLS object another thread is using.
    with contextlib.suppress(OSError), socket.fromfd(sock.fileno(), sock.family, sock.type) as dup:
        dup.shutdown(socket.SHUT_RDWR)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def iter_lines(chunks: Iterator[bytes], limit: int = 4 << 20) -> Iterator[bytes]:
    """Split a byte stream into newline-delimited messages (the gateway's stream framing)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
        if len(buffer) > limit:
            raise ValueError(f"a streamed message exceeds {limit} bytes")
    if buffer.strip():
        yield buffer
