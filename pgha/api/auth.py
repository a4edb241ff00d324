"""Who may read `/cluster`, `/history` and `/metrics`: the holder of the bearer token, a client
whose certificate TLS verified, or anyone when `api.auth` asks for neither. The health checks
(`/primary`, `/replica`, `/health`, `/liveness`, ...) stay open: load balancers ask them
without credentials, and they say no more than whether a node should get traffic.

No sockets here: the server hands over the Authorization header and whether a client
certificate was verified, and gets back None or a `Refusal`. A refusal never quotes what the
client sent, so no token, right or wrong, reaches a log line or an answer.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from http import HTTPStatus

from pgha.errors import ConfigError
from pgha.settings_api import ApiAuthSettings, ApiSettings, token_problem
from pgha.settings_base import split_address

PROTECTED_PATHS = frozenset({"/cluster", "/history", "/metrics"})
_CHALLENGE = 'Bearer realm="pgha"'


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    """For the log line and the answer: what was missing or wrong, never the credential."""
    challenge: str | None
    """The WWW-Authenticate header of a 401."""


@dataclass(frozen=True)
class ApiAuth:
    token: bytes | None = None
    client_cert: bool = False

    @classmethod
    def load(cls, settings: ApiAuthSettings) -> ApiAuth:
        """The credentials `api.auth` asks for, with the token read from `token_file` now;
        raises ConfigError when that file is unreadable or holds no usable token."""
        token: str | None = None
        if settings.token is not None:
            token = settings.token.get_secret_value()
        elif settings.token_file is not None:
            path = settings.token_file
            try:
                token = path.read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not text"
                raise ConfigError(
                    [f"api.auth.token_file: cannot read {path} ({why}); check the path and mode"]
                ) from None
            problem = token_problem(token)
            if problem is not None:
                raise ConfigError([f"api.auth.token_file: {path}: {problem}"])
        return cls(token.encode() if token is not None else None, settings.client_cert)

    @property
    def required(self) -> bool:
        return self.token is not None or self.client_cert

    def refusal(
        self, path: str, authorization: list[str], client_cert_verified: bool
    ) -> Refusal | None:
        """None when a request for `path` may be answered, else why not. `authorization` is
        every Authorization header of the request."""
        if path not in PROTECTED_PATHS or not self.required:
            return None
        if self.client_cert and client_cert_verified:
            return None
        if self.token is None:
            return Refusal(
                HTTPStatus.FORBIDDEN,
                f"{path} needs a client certificate signed by api.tls.ca_cert",
                None,
            )
        needs = "an Authorization: Bearer token"
        if self.client_cert:
            needs += " or a client certificate signed by api.tls.ca_cert"
        if not authorization:
            return Refusal(HTTPStatus.UNAUTHORIZED, f"{path} needs {needs}", _CHALLENGE)
        if len(authorization) > 1 or not self._is_token(authorization[0]):
            return Refusal(
                HTTPStatus.UNAUTHORIZED,
                f"{path}: the Authorization header does not carry the right bearer token",
                f'{_CHALLENGE}, error="invalid_token"',
            )
        return None

    def _is_token(self, header: str) -> bool:
        assert self.token is not None
        scheme, _, presented = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        # http.server decoded the header as Latin-1: these are the bytes the client sent.
        offered = presented.strip().encode("latin-1", errors="replace")
        return hmac.compare_digest(offered, self.token)


def exposure_warnings(api: ApiSettings) -> list[str]:
    """What `pgha config check` says about an API that others can reach unprotected."""
    host = split_address(api.listen)[0]
    if _is_loopback(host):
        return []
    warnings = []
    if not api.auth.required:
        warnings.append(
            f"api.listen: {api.listen} is reachable from other hosts and api.auth is not set: "
            "anyone there can read /cluster, /history and /metrics; set api.auth.token_file "
            "(or api.auth.client_cert), or listen on 127.0.0.1"
        )
    has_token = api.auth.token is not None or api.auth.token_file is not None
    if has_token and not api.tls.enabled:
        warnings.append(
            f"api.auth: the bearer token crosses the network in clear text to {api.listen}; "
            "set api.tls.cert and api.tls.key"
        )
    return warnings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
