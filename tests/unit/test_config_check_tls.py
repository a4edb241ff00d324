"""`pgha config check` on certificate files: a CA file that holds no certificate, a
certificate with another certificate's key, an encrypted key and an expired CA are each named
with the key, the file and the fix; good files pass. Certificates come from openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha.settings import Settings
from pgha.settings_load import load_settings
from pgha.tls_files import ca_problems, ca_warnings, certificate_problems, pair_problems
from tests.fixtures.etcd import TlsFiles, make_tls_files
from tests.unit.test_cli_config import run

YEAR_3000 = 32503680000.0


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def encrypted_key(tls: TlsFiles) -> Path:
    path = tls.client_key.with_name("client-encrypted.key")
    subprocess.run(
        ["openssl", "pkey", "-in", str(tls.client_key), "-out", str(path), "-aes256",
         "-passout", "pass:secret"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return path


def config(tmp_path: Path, **etcd: Any) -> Path:
    document = {
        "node": "pg1",
        "etcd": {"endpoints": ["https://127.0.0.1:2379"], **{k: str(v) for k, v in etcd.items()}},
        "postgres": {"data_dir": str(tmp_path / "data")},
    }
    path = tmp_path / "pgha.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def settings(tmp_path: Path, **etcd: Any) -> Settings:
    return load_settings(config(tmp_path, **etcd))


def test_good_files_give_no_problem_and_no_warning(tls: TlsFiles, tmp_path: Path) -> None:
    good = settings(tmp_path, ca_cert=tls.ca_cert, cert=tls.client_cert, key=tls.client_key)
    assert certificate_problems(good) == []
    assert ca_warnings(good) == []


def test_a_ca_file_without_a_certificate_is_named(tls: TlsFiles, tmp_path: Path) -> None:
    for content in ("", "not a certificate\n", tls.client_key.read_text()):
        (tmp_path / "ca.pem").write_text(content)
        [problem] = ca_problems(settings(tmp_path, ca_cert=tmp_path / "ca.pem"))
        assert problem.startswith(f"etcd.ca_cert: {tmp_path / 'ca.pem'} holds no PEM certificate")
        assert "give the CA certificate in PEM form" in problem


def test_a_ca_file_with_only_a_leaf_certificate_is_warned_about(
    tls: TlsFiles, tmp_path: Path
) -> None:
    [warning] = ca_warnings(settings(tmp_path, ca_cert=tls.client_cert))
    assert f"etcd.ca_cert: {tls.client_cert} holds 1 certificate(s) but none is a CA" in warning


def test_an_expired_ca_is_a_problem(tls: TlsFiles, tmp_path: Path) -> None:
    loaded = settings(tmp_path, ca_cert=tls.ca_cert)
    assert ca_problems(loaded) == []
    [problem] = ca_problems(loaded, now=YEAR_3000)
    assert f"etcd.ca_cert: every CA certificate in {tls.ca_cert} has expired" in problem


def test_a_certificate_with_another_key_is_a_mismatch(tls: TlsFiles, tmp_path: Path) -> None:
    [problem] = pair_problems(settings(tmp_path, cert=tls.client_cert, key=tls.server_key))
    assert problem == (
        f"etcd.cert {tls.client_cert} and etcd.key {tls.server_key} do not belong together "
        "(key values mismatch); give the key that was generated with this certificate"
    )


def test_a_certificate_file_that_is_no_certificate_is_blamed_not_its_key(
    tls: TlsFiles, tmp_path: Path
) -> None:
    [problem] = pair_problems(settings(tmp_path, cert=tls.client_key, key=tls.client_key))
    assert problem.startswith(f"etcd.cert: {tls.client_key} holds no PEM certificate")


def test_a_key_file_that_is_no_key_is_named(tls: TlsFiles, tmp_path: Path) -> None:
    [problem] = pair_problems(settings(tmp_path, cert=tls.client_cert, key=tls.client_cert))
    assert problem.startswith(f"etcd.key: {tls.client_cert} holds no usable PEM private key")


def test_an_encrypted_key_is_refused_without_prompting(
    tls: TlsFiles, encrypted_key: Path, tmp_path: Path
) -> None:
    # Without the callback OpenSSL would ask for the passphrase on the terminal.
    [problem] = pair_problems(settings(tmp_path, cert=tls.client_cert, key=encrypted_key))
    assert f"etcd.key: {encrypted_key} is encrypted with a passphrase" in problem
    assert "openssl pkey" in problem


def test_the_api_pair_and_ca_are_checked_too(tls: TlsFiles, tmp_path: Path) -> None:
    document = {
        "node": "pg1",
        "postgres": {"data_dir": str(tmp_path / "data")},
        "api": {
            "tls": {
                "cert": str(tls.server_cert),
                "key": str(tls.client_key),
                "ca_cert": str(tls.server_key),
                "verify_client": "optional",
            }
        },
    }
    path = tmp_path / "pgha.yml"
    path.write_text(yaml.safe_dump(document))
    problems = certificate_problems(load_settings(path))
    assert [problem.split()[0] for problem in problems] == ["api.tls.ca_cert:", "api.tls.cert"]
    assert "do not belong together" in problems[1]


def test_unreadable_files_are_left_to_the_unreadable_check(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    assert (
        certificate_problems(settings(tmp_path, ca_cert=missing, cert=missing, key=missing)) == []
    )


def test_config_check_exits_1_naming_the_mismatch(tls: TlsFiles, tmp_path: Path) -> None:
    path = config(tmp_path, ca_cert=tls.ca_cert, cert=tls.client_cert, key=tls.server_key)
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 1, result.stdout
    assert f"{path}: etcd.cert {tls.client_cert} and etcd.key {tls.server_key} do not" in (
        result.stderr
    )


def test_config_check_passes_good_files(tls: TlsFiles, tmp_path: Path) -> None:
    path = config(tmp_path, ca_cert=tls.ca_cert, cert=tls.client_cert, key=tls.client_key)
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert str(tls.client_cert) in result.stdout
