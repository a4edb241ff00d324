"""How etcd's JSON gateway answers, translated into what the caller must do next.

Three outcomes matter to the transport: the request was not applied (try the next
endpoint), it was sent but not answered (a write's outcome is unknown), or our token was
rejected (authenticate again). Everything else becomes a typed pgha error with a message
that names the endpoint and the fix.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from pgha.errors import StoreAuthError, StoreError

# gRPC status codes as the gateway reports them in {"error", "message", "code"}.
GRPC_DEADLINE_EXCEEDED = 4
GRPC_NOT_FOUND = 5
GRPC_PERMISSION_DENIED = 7
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_FAILED_PRECONDITION = 9
GRPC_UNAVAILABLE = 14
GRPC_UNAUTHENTICATED = 16


class EtcdRequestError(StoreError):
    """etcd answered and refused the request; it was not applied."""

    def __init__(self, message: str, grpc_code: int | None, etcd_message: str) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code
        self.etcd_message = etcd_message


class NotAppliedError(Exception):
    """The request never reached etcd, or etcd refused it before applying it: try elsewhere."""


class NoAnswerError(Exception):
    """The request was sent but no complete answer came back: a write's outcome is unknown."""


class TokenRejectedError(Exception):
    """etcd did not accept our token (expired, invalidated, stale): authenticate again."""


HTTP_OK = 200


def decode_answer(
    status_code: int, reason: str, body: bytes, url: str, *, expects_auth: bool
) -> Any:
    """The JSON answer of a complete HTTP response from `url`, or the exception it means."""
    try:
        answer = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        answer = None
    if status_code == HTTP_OK:
        if not isinstance(answer, dict):
            raise NoAnswerError(f"the answer was not JSON (HTTP {status_code})")
        if isinstance(answer.get("error"), dict):  # an error inside a streamed answer
            answer = answer["error"]
        else:
            return answer
    if isinstance(answer, dict) and ("error" in answer or "message" in answer):
        raise refusal(answer, url, expects_auth=expects_auth)
    status = f"HTTP {status_code} {reason}"
    if status_code >= 500:  # a proxy or a crashing gateway: we cannot tell more
        raise NoAnswerError(f"{status} without an etcd error")
    text = body[:200].decode("utf-8", errors="replace").strip()
    if "CommonName" in text:
        # etcd 3.4 with auth enabled rejects gateway requests from a client certificate
        # that has a CN, since the gateway cannot pass the CN on as the RBAC user.
        raise StoreAuthError(
            f"etcd at {origin(url)} refused the client certificate: {text!r}; "
            "use a client certificate without a CommonName (authenticate with "
            "etcd.username and etcd.password instead); nothing was applied"
        )
    raise EtcdRequestError(f"etcd at {origin(url)} refused: {status}: {text!r}", None, text)


def refusal(error: dict[str, Any], url: str, *, expects_auth: bool) -> Exception:
    """Turn the gateway's {"error", "message", "code"} into the exception the caller needs."""
    message = str(error.get("message") or error.get("error") or "unknown error")
    raw_code = str(error.get("grpc_code", error.get("code")))
    code = int(raw_code) if raw_code.isdigit() else None
    if "invalid auth token" in message or "auth store is old" in message:
        return TokenRejectedError(message)
    if expects_auth and "user name is empty" in message:
        # We hold no token because etcd had authentication off when we asked; it is on now.
        return TokenRejectedError(message)
    if code == GRPC_PERMISSION_DENIED or "permission denied" in message:
        return StoreAuthError(
            f"etcd at {origin(url)} denied the request: {message}; grant the etcd user "
            "readwrite on the cluster prefix; nothing was applied"
        )
    if code == GRPC_UNAUTHENTICATED or "user name is empty" in message:
        return StoreAuthError(
            f"etcd at {origin(url)} requires authentication: {message}; set etcd.username "
            "and etcd.password; nothing was applied"
        )
    if code == GRPC_UNAVAILABLE and "no leader" in message:
        return NotAppliedError(message)
    if code == GRPC_RESOURCE_EXHAUSTED and "too many requests" in message:
        return NotAppliedError(message)
    if code == GRPC_NOT_FOUND and "lease not found" in message:
        return EtcdRequestError(
            f"etcd at {origin(url)} refused: {message} (it expired or was revoked; "
            "nothing was written)",
            code,
            message,
        )
    if code in (GRPC_UNAVAILABLE, GRPC_DEADLINE_EXCEEDED):
        # "request timed out", "leader changed": the proposal may still be applied.
        return NoAnswerError(f"etcd answered {message!r}")
    return EtcdRequestError(f"etcd at {origin(url)} refused: {message}", code, message)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
