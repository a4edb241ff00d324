"""The transport to etcd v3's JSON gateway: endpoints, timeouts, TLS, token auth, errors.

Every request of `EtcdStore` goes through `EtcdTransport.call`, which keeps these promises:
- one call never takes longer than `timeout` seconds in total, over every endpoint it tries
  (connect and read are both bounded), so a frozen etcd costs a `StoreUnavailable`, never a
  hang;
- a request that never reached a server (refused, connect timeout, TLS failure, "no
  leader") is tried on the next endpoint, and the endpoint that answered becomes the first
  choice of the next call;
- a write that was sent and got no answer raises `StoreOutcomeUnknown` and is *not* tried
  again elsewhere: it may have been applied, and only a fresh read can tell (traps 1d);
- etcd's refusals become typed errors: bad credentials or missing permissions are
  `StoreAuthError`; an expired or invalidated token is renewed once, transparently.

It posts raw gateway JSON itself, as Patroni does, rather than through etcd3gw: etcd3gw
drops response headers (the revisions pgha needs), applies one mutable timeout to every
request, and folds "never sent" and "sent, no answer" into one exception, which is the
distinction that decides whether a write may be retried. The requests go over
`etcd_http`'s kept-alive connections (a pooled connection that the server has closed is
replaced before anything is sent on it); the watch's long stream goes over urllib3.

It must not interpret keys or values: that is `EtcdStore`'s job.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3

from pgha.adapters.etcd_answers import (
    GRPC_FAILED_PRECONDITION,
    EtcdRequestError,
    NoAnswerError,
    NotAppliedError,
    TokenRejectedError,
    decode_answer,
)
from pgha.adapters.etcd_http import EndpointConnections, tls_context
from pgha.errors import StoreAuthError, StoreError, StoreOutcomeUnknown, StoreUnavailable

log = logging.getLogger(__name__)

AUTHENTICATE = "/auth/authenticate"
API_PATH = "/v3/"
"""The gateway's path on etcd >= 3.4; fixed, so that no call spends time on discovery."""
DEFAULT_PORT = 2379
POOL_CONNECTIONS = 4
"""Kept-alive connections per endpoint; more than one only when threads call at once."""
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
"""Without an Accept header etcd 3.4's gateway answers a request that lacks a token with
"permission denied" instead of "user name is empty", which hides the fix (set a user)."""

MIN_CONNECT_SECONDS = 0.2
"""Floor of one endpoint's connect timeout when the call's budget is split between several."""


def b64(text: str | bytes) -> str:
    """Base64 of a key or value as the gateway wants it (text is UTF-8)."""
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> str:
    """Decode a gateway base64 field; bytes that are not UTF-8 become U+FFFD, never an error."""
    return base64.b64decode(text).decode("utf-8", errors="replace")


def prefix_range_end(prefix: str) -> str:
    """The base64 `range_end` that makes a range cover every key starting with `prefix`."""
    data = bytearray(prefix.encode())
    while data and data[-1] == 0xFF:
        data.pop()
    if not data:
        return b64(b"\0")  # every key
    data[-1] += 1
    return b64(bytes(data))


class EtcdTransport:
    """Posts JSON to the first etcd endpoint that answers, within one overall timeout."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout: float,
        username: str | None = None,
        password: str | None = None,
        ca_cert: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        if timeout <= 0:
            raise ValueError(f"etcd timeout must be positive, got {timeout}")
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        if password is not None and username is None:
            raise ValueError("an etcd password needs a username")
        self.timeout = timeout
        self.username = username
        self._password = password
        self._ca_cert = ca_cert
        self._cert = cert
        self._key = key
        self.endpoints = [url.rstrip("/") for url in endpoints]
        self._addresses = [_address(url) for url in self.endpoints]
        self._api_urls = [_api_url(*address) for address in self._addresses]
        self._connections = self._endpoint_connections()
        self._lock = threading.Lock()
        self._preferred = 0
        self._token: str | None = None
        """None: not authenticated yet; "": etcd said authentication is disabled."""

    def _endpoint_connections(self) -> list[EndpointConnections]:
        """Kept-alive connections per endpoint, with our TLS settings for https ones."""
        tls = self._tls_context()
        found = []
        for scheme, host, port in self._addresses:
            found.append(
                EndpointConnections(
                    host,
                    port,
                    tls=tls if scheme == "https" else None,
                    ca_cert=self._ca_cert,
                    client_cert=self._cert is not None,
                    keep=POOL_CONNECTIONS,
                )
            )
        return found

    def _tls_context(self) -> ssl.SSLContext | None:
        """A new context with our TLS settings; None when no endpoint uses https."""
        if not any(scheme == "https" for scheme, _, _ in self._addresses):
            return None
        return tls_context(self._ca_cert, self._cert, self._key)

    def new_pool(self) -> urllib3.PoolManager:
        """urllib3 connections for the watch's stream, with the TLS context of every other
        request (`tls_context`: given that context, urllib3 adds no CA of its own).
        REQUESTS_CA_BUNDLE and the proxy variables play no part: urllib3 reads neither.
        """
        tls = self._tls_context()
        # retries=False: nothing is sent twice behind our back, and errors come unwrapped.
        return urllib3.PoolManager(
            num_pools=len(self.endpoints),
            maxsize=POOL_CONNECTIONS,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ssl_context=tls,
        )

    def url(self, index: int, path: str) -> str:
        """The full URL of an API path (`/kv/range`, `/watch`) on endpoint `index`."""
        return self._api_urls[index] + path.lstrip("/")

    @property
    def preferred_index(self) -> int:
        with self._lock:
            return self._preferred

    def call(self, path: str, body: dict[str, Any], *, idempotent: bool, what: str) -> Any:
        """POST `body` to `path` and return the decoded answer.

        `idempotent` requests (reads, keepalives, revokes) may be sent again to another
        endpoint after an unanswered attempt; other writes raise StoreOutcomeUnknown then.
        `what` names the operation and key for error messages.
        """
        deadline = time.monotonic() + self.timeout
        return self._call_until(deadline, path, body, idempotent=idempotent, what=what)

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header for a request made elsewhere (the watch), if auth is on."""
        if self.username is None:
            return {}
        return self._auth_headers(time.monotonic() + self.timeout, "watch")

    def forget_token(self, token: str | None) -> None:
        """Drop `token` because etcd rejected it; the next request authenticates again."""
        with self._lock:
            if self._token == (token or ""):
                self._token = None

    def close(self) -> None:
        for connections in self._connections:
            connections.close()

    def _call_until(
        self, deadline: float, path: str, body: dict[str, Any], *, idempotent: bool, what: str
    ) -> Any:
        failures: list[str] = []
        token_renewed = False
        order = self._rotation()
        for position, index in enumerate(order):
            while (remaining := deadline - time.monotonic()) > 0:
                headers = {} if path == AUTHENTICATE else self._auth_headers(deadline, what)
                try:
                    return self._attempt(
                        index,
                        path,
                        body,
                        headers=headers,
                        remaining=remaining,
                        endpoints_left=len(order) - position,
                        idempotent=idempotent,
                    )
                except TokenRejectedError as exc:
                    self.forget_token(headers.get("Authorization"))
                    if token_renewed:
                        raise StoreAuthError(
                            f"{what}: etcd at {self.endpoints[index]} rejected a fresh token "
                            f"for user {self.username!r} ({exc}); giving up on this request"
                        ) from None
                    token_renewed = True
                except (NotAppliedError, NoAnswerError) as exc:
                    if isinstance(exc, NoAnswerError) and not idempotent:
                        self._demote(index)
                        raise self._outcome_unknown(what, index, exc) from None
                    failures.append(f"{self.endpoints[index]}: {exc}")
                    self._demote(index)
                    break
                except EtcdRequestError as exc:
                    raise EtcdRequestError(
                        f"{what}: {exc}", exc.grpc_code, exc.etcd_message
                    ) from None
                except StoreAuthError as exc:
                    raise StoreAuthError(f"{what}: {exc}") from None
        raise self._unavailable(what, failures, order)

    def _outcome_unknown(self, what: str, index: int, exc: Exception) -> StoreOutcomeUnknown:
        return StoreOutcomeUnknown(
            f"{what}: sent to etcd at {self.endpoints[index]} but {exc}; it may or may not "
            "have been applied, so it is not retried elsewhere; re-read the cluster before "
            "relying on it"
        )

    def _unavailable(self, what: str, failures: list[str], order: list[int]) -> StoreUnavailable:
        untried = [self.endpoints[i] for i in order[len(failures) :]]
        detail = "; ".join(failures) or "no endpoint could be tried"
        if untried:
            detail += f"; no time left for {', '.join(untried)}"
        return StoreUnavailable(
            f"{what}: etcd unreachable within {self.timeout:g} s ({detail}); "
            "nothing was applied; the caller may retry"
        )

    def _rotation(self) -> list[int]:
        with self._lock:
            first = self._preferred
        count = len(self.endpoints)
        return [(first + step) % count for step in range(count)]

    def _demote(self, index: int) -> None:
        # The next call starts at the endpoint after the one that just failed.
        with self._lock:
            if self._preferred == index:
                self._preferred = (index + 1) % len(self.endpoints)

    def _attempt(
        self,
        index: int,
        path: str,
        body: dict[str, Any],
        *,
        headers: dict[str, str],
        remaining: float,
        endpoints_left: int,
        idempotent: bool,
    ) -> Any:
        connect = min(remaining, max(MIN_CONNECT_SECONDS, self.timeout / len(self.endpoints)))
        # A read leaves time for the endpoints after this one; a write must wait for its
        # answer, since it cannot be sent anywhere else once it left.
        read = remaining / endpoints_left if idempotent else remaining
        answer = self._connections[index].post(
            API_PATH + path.lstrip("/"),
            json.dumps(body).encode(),
            {**headers, **JSON_HEADERS},
            connect_timeout=connect,
            read_timeout=read,
        )
        return decode_answer(
            answer.status,
            answer.reason,
            answer.body,
            self.url(index, path),
            expects_auth=self.username is not None,
        )

    def _auth_headers(self, deadline: float, what: str) -> dict[str, str]:
        if self.username is None:
            return {}
        with self._lock:
            token = self._token
        if token is None:
            token = self._authenticate(deadline, what)
        return {"Authorization": token} if token else {}

    def _authenticate(self, deadline: float, purpose: str) -> str:
        what = f"{purpose}: authenticate as etcd user {self.username!r}"
        body = {"name": self.username, "password": self._password or ""}
        try:
            answer = self._call_until(deadline, AUTHENTICATE, body, idempotent=True, what=what)
        except EtcdRequestError as exc:
            if exc.grpc_code == GRPC_FAILED_PRECONDITION:
                log.warning("%s: etcd has authentication disabled; going on without a token", what)
                return ""
            raise StoreAuthError(
                f"{exc}; check etcd.username and etcd.password; nothing was applied"
            ) from None
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise StoreError(f"{what}: etcd answered without a token: {answer!r}")
        with self._lock:
            self._token = token
        return token


def _address(endpoint: str) -> tuple[str, str, int]:
    """Scheme, host and port of an endpoint URL; the port defaults to etcd's 2379."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or parts.hostname is None:
        raise ValueError(f"etcd endpoint must be http(s)://host:port, got {endpoint!r}")
    return parts.scheme, parts.hostname, parts.port or DEFAULT_PORT


def _api_url(scheme: str, host: str, port: int) -> str:
    """`http(s)://host:port/v3/` of an endpoint."""
    bracketed = f"[{host}]" if ":" in host else host
    return f"{scheme}://{bracketed}:{port}{API_PATH}"
