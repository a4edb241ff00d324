"""Simulated clusters under random kills, freezes and cuts: the safety rules hold at every
step, and the cluster converges to one primary once every fault is healed."""

from __future__ import annotations

import pytest

from tests.unit.sim.cluster_sim import ClusterSim, heal_all


@pytest.mark.parametrize("seed", range(40))
def test_never_two_writable_primaries_and_promotions_only_with_the_key(seed: int) -> None:
    sim = ClusterSim(seed)
    for _ in range(600):
        sim.step()  # raises Violation on two primaries or a promotion without the key


@pytest.mark.parametrize("seed", range(20))
def test_the_cluster_converges_after_every_fault_heals(seed: int) -> None:
    sim = ClusterSim(seed)
    for _ in range(300):
        sim.step()
    heal_all(sim)
    for _ in range(200):  # about 70 s of virtual time without new faults
        sim.step(faults=False)
    primaries = [n.name for n in sim.nodes if n.pg.writable]
    assert len(primaries) == 1, "\n".join(sim.history[-40:])
