"""A real agent whose API speaks HTTPS and asks for a bearer token (certificates made by
openssl in the test): the health checks stay open to anyone who trusts the CA, /cluster,
/history and /metrics answer 401 without the token or with a wrong one and 200 with it, and
no token reaches the agent's log. Restarted with client certificates required, it refuses a
client without one and lets a certificate stand in for the token.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.agent_node import AgentNode
from tests.fixtures.cluster import TIMERS, Cluster
from tests.fixtures.etcd import TlsFiles, make_tls_files
from tests.fixtures.operator import api_get

pytestmark = pytest.mark.integration

AgentCluster = Callable[..., Cluster]
TOKEN = "itest-api-token-5b1e2f"
WRONG_TOKEN = "itest-api-token-5b1e2g"
PROTECTED = ("/cluster", "/history", "/metrics")
OPEN_CODES = {
    "/primary": 200,
    "/read-write": 200,
    "/leader": 200,
    "/replica": 503,
    "/read-only": 200,
    "/health": 200,
    "/liveness": 200,
}


@dataclass(frozen=True)
class Answer:
    status: int
    challenge: str | None
    """The WWW-Authenticate header."""
    body: bytes


def https_get(
    node: AgentNode, path: str, context: ssl.SSLContext, token: str | None = None
) -> Answer | None:
    """GET over HTTPS; None when no HTTP answer comes (refused handshake, reset, timeout)."""
    connection = http.client.HTTPSConnection(node.host, node.api_port, timeout=5, context=context)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.getheader("WWW-Authenticate"), response.read())
    except (OSError, http.client.HTTPException):  # ssl.SSLError is an OSError
        return None
    finally:
        connection.close()


def client(files: TlsFiles, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=files.ca_cert)
    if with_cert:
        context.load_cert_chain(files.client_cert, files.client_key)
    return context


def api_settings(files: TlsFiles, token_file: Path, verify_client: str) -> dict[str, Any]:
    tls: dict[str, Any] = {"cert": str(files.server_cert), "key": str(files.server_key)}
    auth: dict[str, Any] = {"token_file": str(token_file)}
    if verify_client != "none":
        tls |= {"ca_cert": str(files.ca_cert), "verify_client": verify_client}
        auth["client_cert"] = True
    return {"tls": tls, "auth": auth}


def status(answer: Answer | None) -> int | None:
    return answer.status if answer is not None else None


def names_the_leader(answer: Answer | None, node: AgentNode) -> bool:
    if answer is None or answer.status != 200:
        return False
    return bool(json.loads(answer.body)["leader"] == node.name)


@pytest.mark.timeout(300)
def test_https_api_with_a_token_and_then_client_certificates(
    agent_cluster: AgentCluster, tmp_path: Path
) -> None:
    files = make_tls_files(tmp_path / "tls")
    token_file = tmp_path / "api-token"
    token_file.write_text(f"{TOKEN}\n")
    token_file.chmod(0o600)
    cluster = agent_cluster(1, api=api_settings(files, token_file, "none"))
    [node] = cluster.nodes
    anonymous = client(files)

    # --- TLS and a token ---
    cluster.wait_until(
        lambda: status(https_get(node, "/primary", anonymous)) == 200,
        what="the single node answers /primary with 200 over HTTPS",
        timeout=90,
    )
    codes = {path: status(https_get(node, path, anonymous)) for path in OPEN_CODES}
    cluster.check(codes == OPEN_CODES, f"health checks over HTTPS without a token: {codes}")
    plain = api_get(node, "/primary")
    cluster.check(plain is not None and plain.status == 400, "plain HTTP on the TLS port")
    for path in PROTECTED:
        for token in (None, WRONG_TOKEN):
            refused = https_get(node, path, anonymous, token)
            cluster.check(
                refused is not None
                and refused.status == 401
                and (refused.challenge or "").startswith("Bearer"),
                f"{path} with token {token and 'wrong'}: {refused}",
            )
        allowed = https_get(node, path, anonymous, TOKEN)
        cluster.check(allowed is not None and allowed.status == 200, f"{path} with the token")
    cluster.wait_until(
        lambda: names_the_leader(https_get(node, "/cluster", anonymous, TOKEN), node),
        what="/cluster, with the token, names the node as the leader",
        timeout=30,
    )
    log = node.log()
    cluster.check("HTTP API: refused GET from 127.0.0.1: /metrics" in log, "a refusal logged")
    cluster.check(TOKEN not in log and WRONG_TOKEN not in log, "a token in the agent's log")

    # --- client certificates required (and accepted instead of the token) ---
    cluster.check(node.terminate() == 0, "the agent did not exit cleanly")
    settings = api_settings(files, token_file, "required")
    node.write_config(cluster.etcd.endpoint, {**TIMERS, "api": settings})
    node.restart()
    with_cert = client(files, with_cert=True)
    cluster.wait_until(
        lambda: status(https_get(node, "/primary", with_cert)) == 200,
        what="the restarted node answers /primary to a client with a certificate",
        timeout=90,
    )
    cluster.check(https_get(node, "/health", anonymous) is None, "a client without a cert served")
    for path in PROTECTED:
        answer = https_get(node, path, with_cert)
        cluster.check(answer is not None and answer.status == 200, f"{path} with a certificate")
