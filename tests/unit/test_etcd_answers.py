"""How the etcd transport reads urllib3's errors and the gateway's answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from urllib3 import exceptions as http_errors

from pgha.adapters.etcd_answers import (
    EtcdRequestError,
    NoAnswerError,
    NotAppliedError,
    TokenRejectedError,
    classify_transport_error,
    decode_answer,
)
from pgha.errors import StoreAuthError

URL = "https://10.0.0.1:2379/v3/kv/range"


class Connection:
    """Stands in for urllib3's connection object in its error messages."""

    def __str__(self) -> str:
        return "HTTPConnection(host='10.0.0.1', port=2379)"


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (
            http_errors.NewConnectionError(Connection(), "Failed to establish: refused"),  # type: ignore[arg-type]
            NotAppliedError,
            "cannot connect (Failed to establish: refused)",
        ),
        (http_errors.ConnectTimeoutError("timed out"), NotAppliedError, "no connection within 1"),
        (http_errors.ReadTimeoutError(None, URL, "timed out"), NoAnswerError, "no answer within 2"),  # type: ignore[arg-type]
        (
            http_errors.ProtocolError("Connection aborted.", ConnectionResetError("reset")),
            NoAnswerError,
            "the connection broke",
        ),
    ],
)
def test_never_sent_and_sent_without_answer_are_told_apart(
    error: http_errors.HTTPError, kind: type[Exception], text: str
) -> None:
    found = classify_transport_error(error, 1.0, 2.0, None)
    assert isinstance(found, kind)
    assert text in str(found)


def test_a_tls_failure_names_the_ca_and_was_not_applied() -> None:
    error = http_errors.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    found = classify_transport_error(error, 1.0, 2.0, Path("/etc/pgha/ca.crt"), client_cert=False)
    assert isinstance(found, NotAppliedError)
    assert "certificate verify failed" in str(found)
    assert "/etc/pgha/ca.crt" in str(found)
    assert "etcd.cert and etcd.key" in str(found)


def test_a_json_answer_is_returned() -> None:
    answer = decode_answer(200, "OK", b'{"header": {"revision": "7"}}', URL, expects_auth=False)
    assert answer == {"header": {"revision": "7"}}


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (200, b"<html>", NoAnswerError, "not JSON"),
        (200, b'{"error": {"message": "request timed out", "code": 14}}', NoAnswerError, "timed"),
        (400, b'{"error": "user name is empty", "code": 3}', StoreAuthError, "etcd.username"),
        (401, b'{"error": "invalid auth token", "code": 16}', TokenRejectedError, "auth token"),
        (503, b"\xff\xfe", NoAnswerError, "HTTP 503 Service Unavailable without an etcd error"),
        (401, b"tls: certificate has a CommonName", StoreAuthError, "without a CommonName"),
        (404, b"404 page not found", EtcdRequestError, "https://10.0.0.1:2379 refused: HTTP 404"),
    ],
)
def test_refusals_become_what_the_caller_must_do(
    status: int, body: bytes, kind: type[Exception], text: str
) -> None:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(
        status, "Service Unavailable"
    )
    with pytest.raises(kind, match=text):
        decode_answer(status, reason, body, URL, expects_auth=False)
