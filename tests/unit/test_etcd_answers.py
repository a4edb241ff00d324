"""How the etcd transport reads the gateway's answers."""

from __future__ import annotations

import pytest

from pgha.adapters.etcd_answers import (
    EtcdRequestError,
    NoAnswerError,
    TokenRejectedError,
    decode_answer,
)
from pgha.errors import StoreAuthError

URL = "https://10.0.0.1:2379/v3/kv/range"


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
