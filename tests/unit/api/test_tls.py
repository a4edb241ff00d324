"""The API over HTTPS on a real loopback socket, with certificates made by openssl: served
with the test CA, client certificates verified as configured, and neither plain HTTP, a
failed handshake nor a silent client stops it from serving the next request."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest

from pgha.api import server as api_server
from pgha.api.server import ApiServer, ApiUnavailable
from pgha.api.tls import server_context
from pgha.settings_api import ApiAuthSettings, ApiTlsSettings
from pgha.settings_base import Secret
from pgha.settings_load import validated
from tests.fixtures.etcd import TlsFiles, _openssl
from tests.fixtures.ports import free_port
from tests.unit.api.conftest import Serve
from tests.unit.api.reports import report
from tests.unit.api.wire import (
    bearer,
    client_context,
    exchange,
    get,
    header,
    request,
    server_tls,
    status_of,
)

TOKEN = "tls-test-token"


def refused(port: int, context: ssl.SSLContext) -> bool:
    """Whether the server ended the TLS session without an HTTP answer (with TLS 1.3 the
    client learns that its certificate was refused on its first read)."""
    try:
        return get(port, "/health", context=context) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


def test_health_checks_over_https_with_the_test_ca(serving: Serve, tls_files: TlsFiles) -> None:
    port = serving(tls=server_tls(tls_files))
    context = client_context(tls_files)
    answer = get(port, "/primary", context=context)
    assert status_of(answer) == 200
    assert header(answer, "X-Pgha-Term") == "42"
    assert status_of(get(port, "/replica", context=context)) == 503
    with pytest.raises(ssl.SSLCertVerificationError):
        get(port, "/primary", context=ssl.create_default_context())  # the system CAs only


def test_plain_http_on_the_tls_port_gets_a_plain_400(serving: Serve, tls_files: TlsFiles) -> None:
    port = serving(tls=server_tls(tls_files))
    answer = exchange(port, request("/primary"))
    assert status_of(answer) == 400
    assert b"use https://" in answer
    assert status_of(get(port, "/primary", context=client_context(tls_files))) == 200


def test_garbage_and_broken_handshakes_cost_nothing(serving: Serve, tls_files: TlsFiles) -> None:
    port = serving(tls=server_tls(tls_files))
    # A TLS record header, then junk; then a ClientHello cut short by the client going away.
    for junk in (b"\x16\x03\x01\x00\x05hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
        answer = exchange(port, junk, half_close=True, timeout=10)
        assert answer == b"" or answer.startswith(b"\x15\x03"), answer  # nothing or a TLS alert
    assert exchange(port, b"", half_close=True, timeout=10) == b""
    assert status_of(get(port, "/primary", context=client_context(tls_files))) == 200


def test_a_silent_client_does_not_hold_up_the_others(
    serving: Serve, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_server, "TLS_HANDSHAKE_SECONDS", 0.5)
    port = serving(tls=server_tls(tls_files))
    context = client_context(tls_files)
    silent = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
    try:
        started = time.monotonic()
        assert status_of(get(port, "/health", context=context)) == 200
        assert time.monotonic() - started < 0.5  # not queued behind them
        for connection in silent:
            assert connection.recv(1) == b""  # closed by the server once the handshake is late
    finally:
        for connection in silent:
            connection.close()
    assert status_of(get(port, "/health", context=context)) == 200


def test_verify_client_required_refuses_a_client_without_a_trusted_certificate(
    serving: Serve, tls_files: TlsFiles, stranger_cert: tuple[Path, Path]
) -> None:
    port = serving(tls=server_tls(tls_files, "required"))
    assert refused(port, client_context(tls_files))
    assert refused(port, client_context(tls_files, *stranger_cert))
    with_cert = client_context(tls_files, tls_files.client_cert, tls_files.client_key)
    assert status_of(get(port, "/health", context=with_cert)) == 200


def test_a_client_certificate_opens_the_protected_paths_when_auth_accepts_it(
    serving: Serve, tls_files: TlsFiles, stranger_cert: tuple[Path, Path]
) -> None:
    auth = ApiAuthSettings(token=Secret(TOKEN), client_cert=True)
    port = serving(tls=server_tls(tls_files, "optional"), auth=auth)
    anonymous = client_context(tls_files)
    with_cert = client_context(tls_files, tls_files.client_cert, tls_files.client_key)
    assert status_of(get(port, "/health", context=anonymous)) == 200  # load balancers: no cert
    assert status_of(get(port, "/cluster", context=anonymous)) == 401
    assert status_of(get(port, "/cluster", extra=bearer(TOKEN), context=anonymous)) == 200
    assert status_of(get(port, "/metrics", context=with_cert)) == 200
    assert refused(port, client_context(tls_files, *stranger_cert))  # optional, yet verified


def test_a_certificate_alone_is_no_credential_unless_auth_says_so(
    serving: Serve, tls_files: TlsFiles
) -> None:
    port = serving(tls=server_tls(tls_files, "required"), auth=ApiAuthSettings(token=Secret(TOKEN)))
    with_cert = client_context(tls_files, tls_files.client_cert, tls_files.client_key)
    assert status_of(get(port, "/cluster", context=with_cert)) == 401
    assert status_of(get(port, "/cluster", extra=bearer(TOKEN), context=with_cert)) == 200


def tls_with(files: TlsFiles, **paths: Path) -> ApiTlsSettings:
    settings = {"cert": files.server_cert, "key": files.server_key, **paths}
    return validated(ApiTlsSettings, settings)


def test_unusable_certificate_files_are_clear_errors(tls_files: TlsFiles, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    _openssl(
        "pkey", "-in", str(tls_files.server_key), "-aes256", "-passout", "pass:secret",
        "-out", str(encrypted),
    )  # fmt: skip
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    cases = {
        "cannot be used together (key values mismatch)": tls_with(
            tls_files, key=tls_files.client_key
        ),
        "the key is encrypted with a passphrase": tls_with(tls_files, key=encrypted),
        "api.tls.key: cannot read": tls_with(tls_files, key=tmp_path / "absent.key"),
        "api.tls.cert /": tls_with(tls_files, cert=not_pem),
        "api.tls.ca_cert: cannot use": tls_with(tls_files, ca_cert=not_pem),
    }
    for expected, tls in cases.items():
        api = ApiServer(f"127.0.0.1:{free_port()}", report, tls=tls)
        with pytest.raises(ApiUnavailable, match="the HTTP API cannot start") as caught:
            api.start()
        assert expected in str(caught.value)
        assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("verify_client", "mode"),
    [("none", ssl.CERT_NONE), ("optional", ssl.CERT_OPTIONAL), ("required", ssl.CERT_REQUIRED)],
)
def test_verify_client_sets_the_verify_mode(
    tls_files: TlsFiles, verify_client: str, mode: ssl.VerifyMode
) -> None:
    context = server_context(server_tls(tls_files, verify_client))
    assert context is not None
    assert context.verify_mode == mode
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server_context(ApiTlsSettings()) is None
