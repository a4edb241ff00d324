"""Fixtures of the API tests: real servers on loopback ports, and test certificates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgha.api.node_report import NodeReport
from pgha.api.server import ApiServer
from pgha.settings_api import ApiAuthSettings, ApiTlsSettings
from tests.fixtures.etcd import TlsFiles, _openssl_leaf, make_tls_files
from tests.fixtures.ports import free_port
from tests.unit.api.reports import report

Serve = Callable[..., int]


@pytest.fixture
def serving() -> Iterator[Serve]:
    """`serving(source, tls=..., auth=...)` starts an API server and returns its port."""
    started: list[ApiServer] = []

    def start(
        source: Callable[[], NodeReport] = lambda: report("primary"),
        *,
        tls: ApiTlsSettings | None = None,
        auth: ApiAuthSettings | None = None,
    ) -> int:
        api = ApiServer(f"127.0.0.1:{free_port()}", source, tls=tls, auth=auth)
        api.start()
        started.append(api)
        return api.port

    yield start
    for api in started:
        api.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1, client certificates, and another CA."""
    return make_tls_files(tmp_path_factory.mktemp("api-tls"))


@pytest.fixture(scope="session")
def stranger_cert(tls_files: TlsFiles) -> tuple[Path, Path]:
    """A client certificate and key signed by the other CA, which the server does not trust."""
    directory = tls_files.other_ca_cert.parent
    other_ca = (tls_files.other_ca_cert, directory / "other-ca.key")
    return _openssl_leaf(directory, "stranger", other_ca, "/CN=stranger", "")
