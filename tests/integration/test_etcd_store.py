"""EtcdStore against real etcd: what only the real thing can show.

The generic store contract (races, expiry, compare-and-set, snapshot) lives in
tests/contract; here are etcd's own behaviours: the granted TTL, an expired lease's
keepalive answer, frozen and dead endpoints, the watch's recovery, TLS and authentication.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pgha.adapters.etcd_store import EtcdStore
from pgha.adapters.store import CONFIG, LeaderClaim, Record, Unparsable
from pgha.errors import StoreAuthError, StoreError, StoreOutcomeUnknown, StoreUnavailable
from pgha.settings import EtcdSettings, PostgresSettings, Settings
from tests.fixtures.etcd import (
    MIN_LEASE_TTL_SECONDS,
    EtcdCluster,
    EtcdServer,
    SecureEtcd,
)
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.integration

# Generous bounds: they catch a hang, not a slow machine.
HANG_SECONDS = 10.0

StoreFactory = Callable[..., EtcdStore]


@pytest.fixture
def make_store(etcd_prefix: str) -> Iterator[StoreFactory]:
    made: list[EtcdStore] = []

    def make(endpoints: list[str], **options: Any) -> EtcdStore:
        store = EtcdStore(endpoints, options.pop("prefix", etcd_prefix), **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def wait_for(condition: Callable[[], bool], seconds: float = HANG_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def timed(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        call()
    except Exception as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


class Calls:
    """Counts on_change calls from the watch thread."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.count += 1


# Leases ----------------------------------------------------------------------------------


def test_etcd_grants_its_minimum_ttl_when_asked_for_less(
    etcd_server: EtcdServer, make_store: StoreFactory
) -> None:
    store = make_store([etcd_server.endpoint])
    lease = store.grant_lease(1)
    assert lease.ttl_seconds == MIN_LEASE_TTL_SECONDS
    assert store.keep_alive(lease) == MIN_LEASE_TTL_SECONDS


def test_a_keepalive_on_an_expired_lease_is_reported_lost_not_renewed(
    etcd_server: EtcdServer, make_store: StoreFactory
) -> None:
    store = make_store([etcd_server.endpoint])
    lease = store.grant_lease(1)
    claim = store.acquire_leader("pg1", lease)
    assert claim is not None

    # No keepalive: etcd expires the lease and the key with it.
    assert wait_for(lambda: store.read_cluster().leader is None)

    assert store.keep_alive(lease) == 0
    assert not store.renew_leader(claim, lease)
    with pytest.raises(StoreError, match="lease not found"):
        store.acquire_leader("pg1", lease)


# Unreachable etcd ------------------------------------------------------------------------


def test_a_frozen_etcd_gives_store_unavailable_within_the_timeout(
    private_etcd: Callable[[], EtcdServer], make_store: StoreFactory
) -> None:
    server = private_etcd()
    store = make_store([server.endpoint], timeout=1.0)
    lease = store.grant_lease(10)
    server.freeze()
    try:
        error, elapsed = timed(store.read_cluster)
        assert isinstance(error, StoreUnavailable)
        assert not isinstance(error, StoreOutcomeUnknown)
        assert server.endpoint in str(error)
        assert elapsed < HANG_SECONDS

        error, elapsed = timed(lambda: store.keep_alive(lease))
        assert isinstance(error, StoreUnavailable)
        assert elapsed < HANG_SECONDS

        # A write that left but got no answer may have been applied: it says so.
        error, elapsed = timed(lambda: store.acquire_leader("pg1", lease))
        assert isinstance(error, StoreOutcomeUnknown)
        assert "may or may not" in str(error)
        assert elapsed < HANG_SECONDS
    finally:
        server.thaw()
    assert store.read_cluster().revision > 0


def test_a_dead_endpoint_gives_store_unavailable_and_applies_nothing(
    make_store: StoreFactory,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = make_store([dead], timeout=1.0)
    error, elapsed = timed(lambda: store.grant_lease(10))
    assert isinstance(error, StoreUnavailable)
    assert not isinstance(error, StoreOutcomeUnknown)  # it never left: nothing was applied
    assert dead in str(error)
    assert elapsed < HANG_SECONDS


def test_a_dead_first_endpoint_is_skipped(
    etcd_server: EtcdServer, make_store: StoreFactory
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = make_store([dead, etcd_server.endpoint], timeout=2.0)
    lease = store.grant_lease(10)
    claim = store.acquire_leader("pg1", lease)
    assert claim is not None
    assert store.renew_leader(claim, lease)
    leader = store.read_cluster().leader
    assert leader is not None
    assert leader.is_held_by(claim)


def test_the_store_keeps_working_when_one_of_three_members_freezes(
    etcd_cluster: EtcdCluster, make_store: StoreFactory
) -> None:
    store = make_store(etcd_cluster.endpoints, timeout=2.0)
    lease = store.grant_lease(10)
    claim = store.acquire_leader("pg1", lease)
    assert claim is not None
    etcd_cluster.members[0].freeze()

    def renewed() -> bool:
        try:
            return store.renew_leader(claim, lease)
        except StoreUnavailable:
            return False  # the others may still be electing a leader

    assert wait_for(renewed)
    assert store.put(CONFIG, {"ttl": 30}, as_leader=claim)
    config = store.read_cluster().get(CONFIG)
    assert isinstance(config, Record)
    assert config.data == {"ttl": 30}


# Watch -----------------------------------------------------------------------------------


def test_the_watch_reports_each_change_of_the_leader_key(
    etcd_server: EtcdServer, make_store: StoreFactory
) -> None:
    store, other = make_store([etcd_server.endpoint]), make_store([etcd_server.endpoint])
    calls = Calls()
    watch = store.watch_leader(calls)
    try:
        lease = other.grant_lease(10)
        claim = other.acquire_leader("pg2", lease)
        assert claim is not None
        assert wait_for(lambda: calls.count >= 1)
        other.put("sync", {"standbys": []})  # not the leader key: no call
        assert other.release_leader(claim)
        assert wait_for(lambda: calls.count >= 2)
    finally:
        watch.stop()


def test_a_watch_on_a_frozen_etcd_stops_promptly_and_recovers_after_thaw(
    private_etcd: Callable[[], EtcdServer], make_store: StoreFactory
) -> None:
    server = private_etcd()
    store = make_store([server.endpoint], timeout=1.0)
    store.watch_progress_interval_seconds = 0.5  # silent for 1 s = dead
    calls = Calls()
    watch = store.watch_leader(calls)
    server.freeze()
    try:
        assert wait_for(lambda: not _stream_alive(watch))
        time.sleep(1.5)  # a few failed re-creations against the frozen server
    finally:
        server.thaw()
    # The re-created watch reports once, since changes may have been missed.
    assert wait_for(lambda: calls.count >= 1)
    before = calls.count
    lease = store.grant_lease(10)
    assert store.acquire_leader("pg1", lease) is not None
    assert wait_for(lambda: calls.count > before)
    watch.stop()

    frozen_watch = store.watch_leader(calls)
    server.freeze()
    try:
        time.sleep(0.2)
        error, elapsed = timed(frozen_watch.stop)
        assert error is None
        assert elapsed < HANG_SECONDS
        assert not frozen_watch.running
    finally:
        server.thaw()


def _stream_alive(watch: Any) -> bool:
    return watch.confirmations >= 1 and watch._socket is not None


# Leadership facts ------------------------------------------------------------------------


def test_the_term_is_the_create_revision_of_the_leader_key(
    etcd_server: EtcdServer, make_store: StoreFactory
) -> None:
    store = make_store([etcd_server.endpoint])
    lease = store.grant_lease(10)
    store.put("config", {"ttl": 30})
    claim = store.acquire_leader("pg1", lease)
    assert claim is not None
    snapshot = store.read_cluster()
    assert snapshot.leader is not None
    assert snapshot.leader.term == claim.term
    assert snapshot.leader.lease_id == lease.id
    assert snapshot.revision >= claim.term

    # Re-binding to a new lease changes the lease, not the term.
    new_lease = store.grant_lease(10)
    rebound = store.rebind_leader("pg1", snapshot.leader, new_lease)
    assert rebound == LeaderClaim("pg1", claim.term, new_lease.id)
    assert not store.renew_leader(claim, lease)  # the old lease no longer holds the key


def test_garbage_written_with_etcdctl_is_reported_not_raised(
    etcd_server: EtcdServer, etcd_prefix: str, make_store: StoreFactory
) -> None:
    etcd_server.etcdctl("put", f"{etcd_prefix}members/x", "{oops")
    etcd_server.etcdctl("put", f"{etcd_prefix}config", "--", "-12")
    snapshot = make_store([etcd_server.endpoint]).read_cluster()
    assert isinstance(snapshot.members["x"], Unparsable)
    assert isinstance(snapshot.get(CONFIG), Unparsable)
    assert any("members/x" in problem for problem in snapshot.problems)
    assert any("'config'" in problem for problem in snapshot.problems)


# TLS and authentication ------------------------------------------------------------------


def secure_store(
    make_store: StoreFactory, secure: SecureEtcd, *, user: str = "pgha", **options: Any
) -> EtcdStore:
    settings: dict[str, Any] = {
        "username": user,
        "password": secure.users.get(user),
        "ca_cert": secure.tls.ca_cert,
        "cert": secure.tls.client_cert,
        "key": secure.tls.client_key,
    }
    settings.update(options)
    return make_store([secure.endpoint], **settings)


def test_tls_with_the_right_ca_and_password_works_end_to_end(
    etcd_secure: SecureEtcd, make_store: StoreFactory
) -> None:
    store, other = secure_store(make_store, etcd_secure), secure_store(make_store, etcd_secure)
    calls = Calls()
    watch = store.watch_leader(calls)
    try:
        lease = other.grant_lease(10)
        claim = other.acquire_leader("pg1", lease)
        assert claim is not None
        assert other.renew_leader(claim, lease)
        assert store.read_cluster().leader is not None
        assert wait_for(lambda: calls.count >= 1)
    finally:
        watch.stop()


def test_a_wrong_ca_is_named_in_the_error(
    etcd_secure: SecureEtcd, make_store: StoreFactory
) -> None:
    store = secure_store(make_store, etcd_secure, ca_cert=etcd_secure.tls.other_ca_cert)
    with pytest.raises(StoreUnavailable) as raised:
        store.read_cluster()
    message = str(raised.value)
    assert "certificate verify failed" in message
    assert str(etcd_secure.tls.other_ca_cert) in message


def test_requests_ca_bundle_in_the_environment_does_not_override_the_ca(
    etcd_secure: SecureEtcd, make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(etcd_secure.tls.other_ca_cert))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(etcd_secure.tls.other_ca_cert))
    assert secure_store(make_store, etcd_secure).read_cluster().revision > 0

    # Nor does it supply a CA that was not configured.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(etcd_secure.tls.ca_cert))
    unconfigured = secure_store(make_store, etcd_secure, ca_cert=None)
    with pytest.raises(StoreUnavailable, match="certificate verify failed"):
        unconfigured.read_cluster()


def test_a_wrong_password_is_an_auth_error(
    etcd_secure: SecureEtcd, make_store: StoreFactory
) -> None:
    store = secure_store(make_store, etcd_secure, password="not-the-password")
    with pytest.raises(StoreAuthError, match=r"'pgha'.*invalid user ID or password"):
        store.read_cluster()


def test_a_user_without_permission_on_the_prefix_is_an_auth_error(
    etcd_secure: SecureEtcd, make_store: StoreFactory
) -> None:
    store = secure_store(make_store, etcd_secure, user="outsider")
    with pytest.raises(StoreAuthError, match="permission denied"):
        store.read_cluster()
    with pytest.raises(StoreAuthError, match="permission denied"):
        store.put(CONFIG, {"ttl": 30})


def test_no_credentials_on_an_auth_enabled_etcd_is_an_auth_error(
    etcd_secure: SecureEtcd, make_store: StoreFactory
) -> None:
    store = secure_store(make_store, etcd_secure, username=None, password=None)
    with pytest.raises(StoreAuthError, match=r"etcd\.username"):
        store.read_cluster()


def test_an_invalidated_token_is_renewed_transparently(
    etcd_secure: SecureEtcd, make_store: StoreFactory
) -> None:
    store = secure_store(make_store, etcd_secure)
    lease = store.grant_lease(10)
    claim = store.acquire_leader("pg1", lease)
    assert claim is not None

    # Changing a password drops every token of that user in etcd, like an expiry does.
    password = etcd_secure.users["pgha"]
    etcd_secure.server.etcdctl("user", "passwd", "pgha", "--interactive=false", stdin=password)

    assert store.renew_leader(claim, lease)
    assert store.put(CONFIG, {"ttl": 30}, as_leader=claim)
    assert store.read_cluster().get(CONFIG) is not None


def test_a_missing_client_certificate_is_named_in_the_error(
    etcd_secure: SecureEtcd, make_store: StoreFactory
) -> None:
    store = secure_store(make_store, etcd_secure, cert=None, key=None)
    with pytest.raises(StoreUnavailable, match="client certificate"):
        store.read_cluster()


def test_from_settings_reads_endpoints_prefix_and_password_file(
    etcd_secure: SecureEtcd, tmp_path: Path
) -> None:
    password_file = tmp_path / "etcd-password"
    password_file.write_text(etcd_secure.users["pgha"] + "\n")
    settings = Settings(
        node="pg1",
        cluster=f"c{time.monotonic_ns()}",
        postgres=PostgresSettings(data_dir=tmp_path / "data"),
        etcd=EtcdSettings(
            endpoints=[etcd_secure.endpoint],
            username="pgha",
            password_file=password_file,
            ca_cert=etcd_secure.tls.ca_cert,
            cert=etcd_secure.tls.client_cert,
            key=etcd_secure.tls.client_key,
        ),
    )
    store = EtcdStore.from_settings(settings)
    try:
        assert store.prefix == settings.prefix
        assert store.put(CONFIG, {"ttl": 30}, expected_mod_revision=0)
        assert isinstance(store.read_cluster().get(CONFIG), Record)
    finally:
        store.close()


def test_a_client_certificate_with_a_common_name_is_refused_clearly(
    etcd_secure: SecureEtcd, make_store: StoreFactory
) -> None:
    # etcd 3.4's gateway cannot map a certificate CN to an RBAC user, so once auth is on it
    # refuses such certificates outright; the error must tell the operator what to change.
    tls = etcd_secure.tls
    store = secure_store(make_store, etcd_secure, cert=tls.cn_client_cert, key=tls.cn_client_key)
    with pytest.raises(StoreAuthError, match="without a CommonName"):
        store.read_cluster()
