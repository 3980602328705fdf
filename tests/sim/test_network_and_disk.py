"""The network model and the disk model, alone: what they promise the simulator."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from hongbao.raft.types import ConfState, Entry, HardState, Message, MessageType, NodeId
from hongbao.sim.config import NETWORK_IN_FLIGHT_MESSAGES_MAX, NetworkRates
from hongbao.sim.disk import CreateSnapshot, SimDisk, WriteEntries, WriteHardState, WriteMachine
from hongbao.sim.network import DropReason, LinkFault, Network
from hongbao.sim.state_machine import MachineImage, StateMachine
from hongbao.sim.stats import RunStats

N1, N2, N3 = NodeId(1), NodeId(2), NodeId(3)
QUIET = NetworkRates(
    same_region_delay_ticks=0,
    cross_region_delay_ticks_max=1,
    jitter_probability=0.0,
    loss_probability=0.0,
    duplicate_probability=0.0,
)


def make_network(rates: NetworkRates = QUIET, *, seed: int = 1) -> tuple[Network, RunStats]:
    stats = RunStats()
    regions = {N1: 0, N2: 1, N3: 0}
    network = Network(rng=random.Random(seed), region_of=regions, rates=rates, stats=stats)
    return network, stats


def heartbeat(src: NodeId, dst: NodeId, term: int = 1) -> Message:
    return Message(MessageType.HEARTBEAT, to=dst, from_=src, term=term)


def drain(network: Network, now: int) -> list[tuple[Message, DropReason | None]]:
    out = []
    while (due := network.pop_due(now)) is not None:
        out.append((due.flight.message, due.dropped))
    return out


def test_messages_arrive_after_the_link_delay_in_send_order() -> None:
    network, stats = make_network()
    network.send(0, heartbeat(N1, N2, term=1), sender_incarnation=1)
    network.send(0, heartbeat(N1, N2, term=2), sender_incarnation=1)
    network.send(0, heartbeat(N1, N3, term=3), sender_incarnation=1)
    assert network.base_delay_ticks((N1, N3)) == 0  # same region
    assert network.base_delay_ticks((N1, N2)) == 1  # across regions
    assert [(m.term, d) for m, d in drain(network, 0)] == [(3, None)]
    assert [(m.term, d) for m, d in drain(network, 1)] == [(1, None), (2, None)]
    assert stats.messages_sent == 3
    assert stats.messages_reordered == 0


def test_a_partition_drops_messages_already_in_flight_and_healing_restores_the_link() -> None:
    network, stats = make_network()
    network.send(0, heartbeat(N1, N2), sender_incarnation=1)
    network.add_fault(LinkFault("oneway", frozenset({(N1, N2)}), blocked=True))
    network.send(0, heartbeat(N2, N1), sender_incarnation=1)
    assert [d for _, d in drain(network, 1)] == [DropReason.BLOCKED, None]
    assert stats.messages_blocked == 1
    network.heal_fault(0)
    network.send(1, heartbeat(N1, N2), sender_incarnation=1)
    assert [d for _, d in drain(network, 2)] == [None]


def test_loss_duplication_and_jitter_happen_at_their_rates() -> None:
    rates = replace(QUIET, loss_probability=0.2, duplicate_probability=0.2,
                    jitter_probability=0.5, jitter_ticks_max=5)
    network, stats = make_network(rates)
    sends = 2_000
    for tick in range(sends):
        network.send(tick, heartbeat(N1, N2, term=tick), sender_incarnation=1)
    delivered = [m for tick in range(sends + 10) for m, d in drain(network, tick) if d is None]
    assert 0.15 * sends < stats.messages_lost < 0.25 * sends
    assert 0.15 * sends < stats.messages_duplicated < 0.25 * sends
    assert stats.messages_reordered > 0
    assert len(delivered) == sends + stats.messages_duplicated - stats.messages_lost
    assert [m.term for m in delivered] != sorted(m.term for m in delivered)


def test_a_degraded_link_loses_and_delays_but_does_not_block() -> None:
    network, stats = make_network()
    network.add_fault(LinkFault("degrade", frozenset({(N1, N2)}), blocked=False,
                                loss_probability=1.0, extra_delay_ticks=4))
    network.send(0, heartbeat(N1, N2), sender_incarnation=1)
    assert drain(network, 4) == []
    assert [d for _, d in drain(network, 5)] == [DropReason.LOSS]
    assert stats.messages_delayed == 1


def test_the_network_holds_a_bounded_number_of_messages() -> None:
    network, _ = make_network()
    for _ in range(NETWORK_IN_FLIGHT_MESSAGES_MAX + 5):
        network.send(0, heartbeat(N1, N2), sender_incarnation=1)
    assert network.in_flight_count == NETWORK_IN_FLIGHT_MESSAGES_MAX
    assert len(network.overflowed) == 5


def test_the_same_seed_gives_the_same_network_behaviour() -> None:
    rates = replace(QUIET, loss_probability=0.3, jitter_probability=0.5)

    def run() -> list[tuple[int, DropReason | None]]:
        network, _ = make_network(rates, seed=7)
        for tick in range(200):
            network.send(tick, heartbeat(N1, N2, term=tick), sender_incarnation=1)
        return [(m.term, d) for tick in range(220) for m, d in drain(network, tick)]

    assert run() == run()


# -- disk ---------------------------------------------------------------------------------

CONF = ConfState(voters=frozenset({N1, N2, N3}))


def test_a_crash_keeps_exactly_the_synced_writes() -> None:
    disk = SimDisk(CONF)
    disk.write(WriteEntries((Entry(term=1, index=1, data=b"a"),)))
    disk.write(WriteHardState(HardState(term=1, vote=N1, commit=1)))
    disk.sync()
    disk.write(WriteEntries((Entry(term=1, index=2, data=b"b"),)))
    disk.write(WriteHardState(HardState(term=2, vote=N2, commit=2)))
    assert disk.volatile.last_index() == 2  # the core sees unsynced writes at once
    assert disk.crash() == 2
    assert disk.volatile.last_index() == 1
    assert disk.volatile.initial_state()[0] == HardState(term=1, vote=N1, commit=1)
    assert disk.unsynced_count == 0


def test_the_state_machine_image_is_durable_only_with_what_was_synced_before_it() -> None:
    disk = SimDisk(CONF)
    machine = StateMachine(disk.machine_durable)
    entry = Entry(term=1, index=1, data=b"a")
    disk.write(WriteEntries((entry,)))
    disk.write(WriteHardState(HardState(term=1, vote=N1, commit=1)))
    disk.write(WriteMachine(machine.apply(entry)))
    disk.crash()
    assert disk.machine_durable == MachineImage.initial(CONF)
    disk.write(WriteEntries((entry,)))
    disk.write(WriteMachine(machine.image))
    disk.sync()
    disk.crash()
    assert disk.machine_durable.applied_index == 1
    assert disk.volatile.last_index() == 1


@pytest.mark.parametrize("compaction_lag", [0, 2])
def test_a_snapshot_and_compaction_survive_a_crash_once_synced(compaction_lag: int) -> None:
    disk = SimDisk(CONF)
    machine = StateMachine(disk.machine_durable)
    batch = tuple(Entry(term=1, index=i, data=b"x") for i in range(1, 6))
    disk.write(WriteEntries(batch))
    for entry in batch:
        machine.apply(entry)
    disk.write(WriteMachine(machine.image))
    disk.write(CreateSnapshot(index=5, conf_state=CONF, data=machine.image.encode(),
                              compact_index=5 - compaction_lag))
    disk.sync()
    disk.crash()
    assert disk.volatile.snapshot().meta.index == 5
    assert disk.volatile.last_index() == 5
    assert MachineImage.from_snapshot(disk.volatile.snapshot()) == MachineImage(
        5, machine.image.digest, CONF, 5
    )
