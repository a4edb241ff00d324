"""The `api` section: where the HTTP API listens, its optional TLS, and its auth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pgha.settings_base import Address, Check, Secret, Section


@dataclass(frozen=True, kw_only=True)
class ApiTlsSettings(Section):
    """HTTPS for the API: off unless `cert` and `key` are given."""

    cert: Path | None = None
    key: Path | None = None
    ca_cert: Path | None = None
    """The CA that signs the client certificates to accept."""
    verify_client: Literal["none", "optional", "required"] = "none"

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together: give both or neither")
        if self.verify_client != "none" and self.ca_cert is None:
            raise ValueError(
                f"verify_client: {self.verify_client} needs ca_cert, the CA that signs the "
                "client certificates to accept"
            )
        if self.cert is None and (self.ca_cert is not None or self.verify_client != "none"):
            raise ValueError(
                "ca_cert and verify_client need cert and key: clients are verified over TLS only"
            )

    @property
    def enabled(self) -> bool:
        return self.cert is not None


def token_problem(text: str) -> str | None:
    """Why `text` cannot be a bearer token, without quoting it; None when it can."""
    if 0 < len(text) <= 1024 and text.isascii() and text.isprintable() and " " not in text:
        return None
    return "a token is 1 to 1024 visible ASCII characters without spaces (it goes in a header)"


def _check_token(token: Secret | None) -> Secret | None:
    problem = token_problem(token.get_secret_value()) if token is not None else None
    if problem is not None:
        raise ValueError(problem)
    return token


@dataclass(frozen=True, kw_only=True)
class ApiAuthSettings(Section):
    """Credentials for /cluster, /history and /metrics; the health checks stay open.

    A bearer token (inline or in a file, never both) and/or a client certificate verified
    against api.tls.ca_cert; when both are set, either one is enough. Neither: no auth.
    """

    token: Annotated[Secret | None, Check(_check_token)] = None
    token_file: Path | None = None
    client_cert: bool = False

    def __post_init__(self) -> None:
        if self.token is not None and self.token_file is not None:
            raise ValueError("give either token or token_file, not both")

    @property
    def required(self) -> bool:
        return self.token is not None or self.token_file is not None or self.client_cert


@dataclass(frozen=True, kw_only=True)
class ApiSettings(Section):
    listen: Address = "127.0.0.1:8008"
    tls: ApiTlsSettings = field(default_factory=ApiTlsSettings)
    auth: ApiAuthSettings = field(default_factory=ApiAuthSettings)

    @property
    def url(self) -> str:
        """The API's base URL as peers and operators should call it: https once TLS is on."""
        return f"{'https' if self.tls.enabled else 'http'}://{self.listen}"

    def __post_init__(self) -> None:
        if self.auth.client_cert and self.tls.verify_client == "none":
            raise ValueError(
                "auth.client_cert needs tls.verify_client: optional or required (and "
                "tls.ca_cert); without them no client certificate is ever verified"
            )
