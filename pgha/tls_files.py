"""Offline checks of the certificate files a configuration names, for `pgha config check`.

Each CA file must hold at least one certificate, none of the CAs may have expired, and each
client or server certificate must parse and belong to its (unencrypted) key. These are the
mistakes that otherwise show up only at the first TLS handshake, as an opaque OpenSSL error
in the agent's log, or, for an encrypted key, as OpenSSL prompting for a passphrase on a
terminal nobody watches.

It uses only the standard library's ssl module and contacts nothing: whether etcd's
certificate really was signed by the configured CA is for the first connection to tell.
Files this process cannot read are skipped; `unreadable_files` reports those.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

from pgha.settings import Settings


class _EncryptedKey(Exception):
    """Raised from the passphrase callback: a key that needs one cannot be used unattended."""


def _refuse_passphrase() -> bytes:
    raise _EncryptedKey


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True


def _why(exc: ssl.SSLError) -> str:
    # OpenSSL's reason ("NO_CERTIFICATE_OR_CRL_FOUND"); a bare "PEM lib" error has none.
    return str(exc.reason).lower().replace("_", " ") if exc.reason else "OpenSSL cannot parse it"


def _ca_files(settings: Settings) -> dict[str, Path | None]:
    return {"etcd.ca_cert": settings.etcd.ca_cert, "api.tls.ca_cert": settings.api.tls.ca_cert}


def _pairs(settings: Settings) -> dict[str, tuple[Path | None, Path | None]]:
    return {
        "etcd": (settings.etcd.cert, settings.etcd.key),
        "api.tls": (settings.api.tls.cert, settings.api.tls.key),
    }


def _load_cas(key: str, path: Path) -> tuple[list[str], int, str | None]:
    """The end dates (notAfter) of the CA certificates in `path`, how many certificates of
    any kind it holds, and why it cannot be used, if it cannot."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        return (
            [],
            0,
            (
                f"{key}: {path} holds no PEM certificate ({_why(exc)}); give the CA certificate "
                "in PEM form (-----BEGIN CERTIFICATE-----)"
            ),
        )
    ends = [str(ca.get("notAfter", "")) for ca in context.get_ca_certs()]
    return ends, context.cert_store_stats()["x509"], None


def ca_problems(settings: Settings, now: float | None = None) -> list[str]:
    """CA files that hold no certificate, or whose every CA certificate has expired."""
    now = time.time() if now is None else now
    problems = []
    for key, path in _ca_files(settings).items():
        if path is None or not _readable(path):
            continue
        cas, _, problem = _load_cas(key, path)
        if problem is not None:
            problems.append(problem)
            continue
        ends = [ssl.cert_time_to_seconds(end) for end in cas if end]
        if ends and max(ends) < now:
            expired = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(max(ends)))
            problems.append(
                f"{key}: every CA certificate in {path} has expired (the last on {expired}); "
                "nothing it signed can be verified: install the renewed CA certificate"
            )
    return problems


def ca_warnings(settings: Settings) -> list[str]:
    """CA files whose certificates parse but none of which is a CA (CA:TRUE)."""
    warnings = []
    for key, path in _ca_files(settings).items():
        if path is None or not _readable(path):
            continue
        cas, count, problem = _load_cas(key, path)
        if problem is None and not cas:
            warnings.append(
                f"{key}: {path} holds {count} certificate(s) but none is a CA "
                "(basicConstraints CA:TRUE); verification will fail unless this is exactly "
                "the peer's own self-signed certificate: give the CA that signed it"
            )
    return warnings


def pair_problems(settings: Settings) -> list[str]:
    """Certificates that do not parse, keys that do not parse, are encrypted, or belong to
    another certificate."""
    problems = []
    for section, (cert, key) in _pairs(settings).items():
        if cert is None or key is None or not (_readable(cert) and _readable(key)):
            continue
        problem = _pair_problem(section, cert, key)
        if problem is not None:
            problems.append(problem)
    return problems


def _pair_problem(section: str, cert: Path, key: Path) -> str | None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # Parses the certificate alone first, so that a bad key is not blamed on it.
        context.load_verify_locations(cafile=cert)
    except ssl.SSLError as exc:
        return (
            f"{section}.cert: {cert} holds no PEM certificate ({_why(exc)}); give the "
            "certificate in PEM form (-----BEGIN CERTIFICATE-----)"
        )
    try:
        context.load_cert_chain(cert, key, password=_refuse_passphrase)
    except _EncryptedKey:
        return (
            f"{section}.key: {key} is encrypted with a passphrase, which pgha cannot type in; "
            f"give an unencrypted key (openssl pkey -in {key} -out NEW.key), mode 0600"
        )
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return (
                f"{section}.cert {cert} and {section}.key {key} do not belong together (key "
                "values mismatch); give the key that was generated with this certificate"
            )
        return (
            f"{section}.key: {key} holds no usable PEM private key for {cert} ({_why(exc)}); "
            "give the unencrypted PEM key (-----BEGIN PRIVATE KEY-----) of this certificate"
        )
    return None


def certificate_problems(settings: Settings) -> list[str]:
    """Everything wrong with the certificate files that will stop TLS from working."""
    return ca_problems(settings) + pair_problems(settings)
