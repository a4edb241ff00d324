"""Two ways to run the store contract: against real etcd, and against the memory store.

A harness makes several clients of one cluster (as several nodes would be), lets time pass
(really, or on the memory store's virtual clock) and writes raw text into keys the way an
operator with etcdctl could.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import urllib3

from pgha.adapters.etcd_store import EtcdStore
from pgha.adapters.memory_store import MemoryEtcd, MemoryStore
from pgha.adapters.store import ClusterStore


class StoreHarness(Protocol):
    prefix: str

    def make_store(self) -> ClusterStore: ...

    def sleep(self, seconds: float) -> None: ...

    def write_raw(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


def wait_until(harness: StoreHarness, condition: Callable[[], bool], seconds: float) -> bool:
    """Let time pass in small steps until the condition holds or `seconds` have passed."""
    step = 0.1
    waited = 0.0
    while waited < seconds:
        if condition():
            return True
        harness.sleep(step)
        waited += step
    return condition()


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryHarness:
    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.server = MemoryEtcd(self.clock)
        self.prefix = f"/pgha/contract-{uuid.uuid4().hex[:8]}/"

    def make_store(self) -> ClusterStore:
        return MemoryStore(self.server, self.prefix)

    def sleep(self, seconds: float) -> None:
        self.clock.now += seconds
        self.server.tick()

    def write_raw(self, key: str, value: str) -> None:
        self.server.put_raw(self.prefix + key, value)

    def close(self) -> None:
        pass


class EtcdHarness:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.prefix = f"/pgha/contract-{uuid.uuid4().hex[:8]}/"
        self._stores: list[EtcdStore] = []

    def make_store(self) -> ClusterStore:
        store = EtcdStore([self.endpoint], self.prefix, timeout=3.0)
        self._stores.append(store)
        return store

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def write_raw(self, key: str, value: str) -> None:
        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()

        reply = urllib3.request(
            "POST",
            f"{self.endpoint}/v3/kv/put",
            json={"key": b64(self.prefix + key), "value": b64(value)},
            timeout=5,
            retries=False,
        )
        assert reply.status == 200, reply.data

    def close(self) -> None:
        for store in self._stores:
            store.close()
