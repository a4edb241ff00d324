"""A raw client for the API tests: bytes in, bytes out, over plain TCP or TLS, so that a test
can send what no well-behaved HTTP library would."""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path

from pgha.settings_api import ApiTlsSettings
from pgha.settings_load import validated
from tests.fixtures.etcd import TlsFiles


def connect(port: int, context: ssl.SSLContext | None = None, timeout: float = 30) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if context is None:
        return connection
    try:
        return context.wrap_socket(connection, server_hostname="127.0.0.1")
    except BaseException:
        connection.close()
        raise


def exchange(
    port: int,
    request: bytes,
    timeout: float = 30,
    context: ssl.SSLContext | None = None,
    half_close: bool = False,
) -> bytes:
    """Send `request` and read until the server closes the connection; with `half_close`
    (plain TCP only) say we are done sending, so that a partial request is not waited for."""
    with connect(port, context, timeout) as connection:
        with contextlib.suppress(OSError):  # it may answer and close before reading it all
            connection.sendall(request)
            if half_close:
                connection.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def header(answer: bytes, name: str) -> str | None:
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def request(path: str, method: str = "GET", extra: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n"


def get(
    port: int,
    path: str,
    method: str = "GET",
    extra: bytes = b"",
    context: ssl.SSLContext | None = None,
) -> bytes:
    return exchange(port, request(path, method, extra), context=context)


def bearer(token: str) -> bytes:
    return f"Authorization: Bearer {token}\r\n".encode()


def client_context(
    files: TlsFiles, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """Trusts the test CA; presents `cert` when given."""
    context = ssl.create_default_context(cafile=files.ca_cert)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def server_tls(files: TlsFiles, verify_client: str = "none") -> ApiTlsSettings:
    ca_cert = files.ca_cert if verify_client != "none" else None
    return validated(
        ApiTlsSettings,
        {
            "cert": files.server_cert,
            "key": files.server_key,
            "ca_cert": ca_cert,
            "verify_client": verify_client,
        },
    )
