"""HTTPS for the agent's API: the server's TLS context, and the handshake of one connection.

The handshake runs on the connection's own worker thread under a deadline, never in the
accept loop: a client that connects and stays silent, speaks plain HTTP to the TLS port or
fails the handshake costs one short-lived thread and the server keeps accepting. A plain
HTTP request gets a plain-text 400 saying to use https, so a load balancer configured
without TLS shows a clear error rather than a reset.

This module does not decide who may read what (that is auth.py) nor parse HTTP.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from pathlib import Path

from pgha.errors import ConfigError
from pgha.settings_api import ApiTlsSettings

log = logging.getLogger("pgha.api")

TLS_HANDSHAKE_RECORD = 0x16
"""The first byte of every TLS ClientHello."""
_PLAIN_HTTP_BODY = b"this API speaks HTTPS only: use https:// here\n"
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_PLAIN_HTTP_BODY), _PLAIN_HTTP_BODY)
)
_DRAIN_BYTES = 64 * 1024
_VERIFY_MODES = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def server_context(tls: ApiTlsSettings) -> ssl.SSLContext | None:
    """The TLS context `api.tls` describes, None when it is off; raises ConfigError naming the
    key and file that cannot be used."""
    if tls.cert is None or tls.key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(context, tls.cert, tls.key)
    if tls.ca_cert is not None:
        try:
            context.load_verify_locations(cafile=tls.ca_cert)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [
                    f"api.tls.ca_cert: cannot use {tls.ca_cert} as a CA ({_why(exc)}); "
                    "give a readable PEM file of CA certificates"
                ]
            ) from None
    context.verify_mode = _VERIFY_MODES[tls.verify_client]
    return context


def _load_pair(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    for name, path in (("cert", cert), ("key", key)):
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                [f"api.tls.{name}: cannot read {path} ({exc.strerror}); check the path and mode"]
            ) from None
    try:
        # A passphrase would make OpenSSL prompt on the agent's terminal: refuse instead.
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except (OSError, ssl.SSLError, _EncryptedKey) as exc:
        raise ConfigError(
            [
                f"api.tls.cert {cert} and api.tls.key {key} cannot be used together "
                f"({_why(exc)}); give a PEM certificate and the unencrypted key that belongs to it"
            ]
        ) from None


class _EncryptedKey(Exception):
    def __str__(self) -> str:
        return "the key is encrypted with a passphrase"


def _no_passphrase() -> bytes:
    raise _EncryptedKey


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def accept_tls(
    connection: socket.socket, context: ssl.SSLContext, client: str, timeout_seconds: float
) -> ssl.SSLSocket | None:
    """The TLS session of a freshly accepted `connection`, or None when the client went away,
    was too slow, spoke plain HTTP or failed the handshake (each logged in one line). On None
    the caller still owns `connection` and closes it."""
    deadline = time.monotonic() + timeout_seconds
    try:
        connection.settimeout(timeout_seconds)
        first = connection.recv(1, socket.MSG_PEEK)
        if not first:
            return None
        if first[0] != TLS_HANDSHAKE_RECORD:
            log.info("HTTP API: plain HTTP from %s on the TLS port; answered 400", client)
            _answer_plain(connection, deadline)
            return None
        secured = context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:  # TimeoutError is an OSError
        log.debug("HTTP API: connection from %s ended before TLS: %s", client, exc)
        return None
    try:
        secured.settimeout(max(deadline - time.monotonic(), 0.001))
        secured.do_handshake()
    except ssl.SSLError as exc:
        log.info("HTTP API: TLS handshake with %s failed: %s", client, _why(exc))
        _close(secured)
        return None
    except OSError as exc:
        log.debug("HTTP API: TLS handshake with %s did not finish: %s", client, exc)
        _close(secured)
        return None
    return secured


def client_certificate_verified(connection: socket.socket) -> bool:
    """Whether TLS verified a certificate of this client against api.tls.ca_cert: with
    verify_client optional or required, the handshake fails on any certificate that does not
    verify, so one that is present was verified."""
    return isinstance(connection, ssl.SSLSocket) and bool(connection.getpeercert())


def _answer_plain(connection: socket.socket, deadline: float) -> None:
    """A plain-text 400, then read what the client sent (bounded) so that closing does not
    reset the connection before it reads the answer."""
    with contextlib.suppress(OSError):
        connection.sendall(PLAIN_HTTP_ANSWER)
        connection.shutdown(socket.SHUT_WR)
        drained = 0
        while drained < _DRAIN_BYTES:
            connection.settimeout(max(min(deadline - time.monotonic(), 1.0), 0.001))
            chunk = connection.recv(8192)
            if not chunk:
                break
            drained += len(chunk)


def _close(secured: ssl.SSLSocket) -> None:
    with contextlib.suppress(OSError):
        secured.close()
