"""Who may read /cluster, /history and /metrics: the rules as a table, then the same over a
real socket (401 with a challenge, 200 with the token, one log line per refusal, no token in
any answer or log line), and the health checks open to all."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pgha.api.auth import PROTECTED_PATHS, ApiAuth
from pgha.api.routes import HEALTH_CHECKS
from pgha.errors import ConfigError
from pgha.settings_api import ApiAuthSettings
from pgha.settings_base import Secret
from tests.unit.api.conftest import Serve
from tests.unit.api.wire import bearer, get, header, status_of

TOKEN = "s3cret-Token_value"
WRONG = "s3cret-Token_valuf"
TOKEN_ONLY = ApiAuth(TOKEN.encode())
CERT_ONLY = ApiAuth(client_cert=True)
EITHER = ApiAuth(TOKEN.encode(), client_cert=True)


@pytest.mark.parametrize(
    ("auth", "headers", "cert", "expected"),
    [
        (ApiAuth(), [], False, None),
        (TOKEN_ONLY, [f"Bearer {TOKEN}"], False, None),
        (TOKEN_ONLY, [f"bearer   {TOKEN} "], False, None),
        (TOKEN_ONLY, [], False, 401),
        (TOKEN_ONLY, [], True, 401),  # a certificate is not what this API asks for
        (TOKEN_ONLY, [f"Bearer {WRONG}"], False, 401),
        (TOKEN_ONLY, [f"Bearer {TOKEN}x"], False, 401),
        (TOKEN_ONLY, [TOKEN], False, 401),
        (TOKEN_ONLY, [f"Basic {TOKEN}"], False, 401),
        (TOKEN_ONLY, ["Bearer"], False, 401),
        (TOKEN_ONLY, ["Bearer \xff\xfe"], False, 401),
        (TOKEN_ONLY, [f"Bearer {TOKEN}", f"Bearer {TOKEN}"], False, 401),
        (CERT_ONLY, [], True, None),
        (CERT_ONLY, [], False, 403),
        (CERT_ONLY, [f"Bearer {TOKEN}"], False, 403),
        (EITHER, [], True, None),
        (EITHER, [f"Bearer {TOKEN}"], False, None),
        (EITHER, [], False, 401),
        (EITHER, [f"Bearer {WRONG}"], False, 401),
    ],
)
def test_who_may_read_a_protected_path(
    auth: ApiAuth, headers: list[str], cert: bool, expected: int | None
) -> None:
    for path in PROTECTED_PATHS:
        refusal = auth.refusal(path, headers, cert)
        assert (refusal.status if refusal else None) == expected, path
        if refusal is not None:
            assert TOKEN not in refusal.reason
            assert path in refusal.reason
            assert (refusal.challenge is not None) == (expected == 401)


def test_the_health_checks_and_unknown_paths_are_open() -> None:
    for path in [*HEALTH_CHECKS, "/nope", "/cluster/", "/Cluster"]:
        assert EITHER.refusal(path, [], False) is None, path


def test_a_token_comes_from_its_file_without_the_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")
    assert ApiAuth.load(ApiAuthSettings(token_file=path)) == ApiAuth(TOKEN.encode())
    assert ApiAuth.load(ApiAuthSettings(token=Secret(TOKEN))) == ApiAuth(TOKEN.encode())
    assert not ApiAuth.load(ApiAuthSettings()).required


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, r"cannot read .*/token \(No such file"),
        ("", "visible ASCII"),
        ("my secret", "without spaces"),
    ],
)
def test_an_unusable_token_file_is_a_clear_error(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=rf"api\.auth\.token_file: .*{expected}") as caught:
        ApiAuth.load(ApiAuthSettings(token_file=path))
    assert "secret" not in str(caught.value)


# --- over a socket ---------------------------------------------------------------------------


def test_protected_paths_answer_401_without_the_token_and_200_with_it(
    serving: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    port = serving(auth=ApiAuthSettings(token=Secret(TOKEN)))
    caplog.set_level(logging.INFO, logger="pgha.api")
    for path in sorted(PROTECTED_PATHS):
        for method in ("GET", "HEAD"):
            missing = get(port, path, method)
            assert status_of(missing) == 401, (path, method, missing)
            assert header(missing, "WWW-Authenticate") == 'Bearer realm="pgha"'
            wrong = get(port, path, method, bearer(WRONG))
            assert status_of(wrong) == 401
            assert header(wrong, "WWW-Authenticate") == 'Bearer realm="pgha", error="invalid_token"'
            assert WRONG.encode() not in wrong
            assert status_of(get(port, path, method, bearer(TOKEN))) == 200
    body = get(port, "/cluster").partition(b"\r\n\r\n")[2]
    assert "needs an Authorization: Bearer token" in json.loads(body)["error"]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 13  # 3 paths x 2 methods x (missing, wrong), and the one above
    assert all(TOKEN not in line and WRONG not in line for line in caplog.messages)
    assert "refused GET from 127.0.0.1: /cluster: the Authorization header" in "\n".join(refusals)


def test_the_health_checks_stay_open(serving: Serve) -> None:
    port = serving(auth=ApiAuthSettings(token=Secret(TOKEN)))
    codes = {path: status_of(get(port, path)) for path in HEALTH_CHECKS}
    assert codes == {
        "/primary": 200,
        "/read-write": 200,
        "/leader": 200,
        "/replica": 503,
        "/read-only": 200,
        "/health": 200,
        "/liveness": 200,
    }


def test_writes_get_405_before_any_question_of_credentials(serving: Serve) -> None:
    port = serving(auth=ApiAuthSettings(token=Secret(TOKEN)))
    for method in ("POST", "PUT", "DELETE"):
        answer = get(port, "/cluster", method, bearer(TOKEN) + b"Content-Length: 2\r\n\r\n{}")
        assert status_of(answer) == 405
        assert header(answer, "Allow") == "GET, HEAD"


def test_without_api_auth_everything_is_open(serving: Serve) -> None:
    port = serving()
    for path in sorted(PROTECTED_PATHS):
        assert status_of(get(port, path)) == 200
