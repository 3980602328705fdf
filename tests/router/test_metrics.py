"""A router's /metrics in front of a real cluster: requests by method and status code,
the latency histogram, retries and redirects, and the region states during a drain.

Every figure is read the way Prometheus reads it: an HTTP scrape of the router's
metrics port, parsed by prometheus_client's own parser. The counters grow in the
request's handler before its answer leaves the router, so a scrape after the answer
already shows them (no waiting); only the region state follows the router's poll of the
cluster state, so that is waited for with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from collections.abc import Mapping

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hongbao.config.routers import RouterSpec
from hongbao.config.topology import Topology
from hongbao.ledger.sharding import shard_for_user
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.drain import drain_region, undrain_region
from hongbao.ops.local import wait_until
from hongbao.ops.transfer import election_timeout_ms, transfer_once
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, ledger_pb2_grpc
from tests.cluster.support import rpc_error
from tests.router.conftest import Routed

pytestmark = pytest.mark.cluster

SCRAPE_TIMEOUT_S = 5.0
FOLLOW_TIMEOUT_S = 10.0  # the router re-reads the cluster state every state_poll_ms (100)
WALLET = "hongbao.v1.Wallet"
Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(spec: RouterSpec) -> Samples:
    """Every sample of the router's /metrics: (name, labels) -> value."""
    assert spec.metrics_address is not None, "the test topology gives routers metrics ports"
    url = f"http://{spec.metrics_address}/metrics"
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def region_states(samples: Samples, topology: Topology) -> dict[str, str]:
    """region -> the one state whose series is 1 (asserting exactly one is)."""
    found: dict[str, str] = {}
    for region in topology.regions:
        current = [
            state
            for state in ("active", "draining", "drained")
            if value(samples, "hongbao_region_state", region=region.name, state=state) == 1
        ]
        assert len(current) == 1, f"{region.name}: states at 1: {current}"
        found[region.name] = current[0]
    return found


def deposit(address: str, request_id: str, user: str, amount_fen: int) -> None:
    with grpc.insecure_channel(address) as channel:
        ledger_pb2_grpc.WalletStub(channel).Deposit(
            ledger_pb2.DepositRequest(request_id=request_id, user_id=user, amount_fen=amount_fen),
            timeout=10,
        )


def test_requests_are_counted_by_method_and_code_with_their_latency(routed: Routed) -> None:
    spec = routed.harness.topology.routers[0]
    sent = 25
    before = scrape(spec)
    ok = {"service": WALLET, "method": "Deposit", "code": "OK"}
    assert before[("hongbao_router_requests_total", frozenset(ok.items()))] == 0  # from the start
    for i in range(sent):
        deposit(spec.address, f"met-dep-{i}", f"met-user-{i % 7}", 100)
    with grpc.insecure_channel(spec.address) as channel:
        wallet = ledger_pb2_grpc.WalletStub(channel)
        code, _ = rpc_error(
            lambda: wallet.Deposit(
                ledger_pb2.DepositRequest(request_id="met-bad", user_id="met-user-0", amount_fen=0),
                timeout=10,
            )
        )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    after = scrape(spec)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("hongbao_router_requests_total", **ok) == sent
    bad = {**ok, "code": "INVALID_ARGUMENT"}
    assert grew("hongbao_router_requests_total", **bad) == 1
    method = {"service": WALLET, "method": "Deposit"}
    assert grew("hongbao_router_request_seconds_count", **method) == sent + 1
    assert grew("hongbao_router_request_seconds_bucket", **method, le="+Inf") == sent + 1
    assert grew("hongbao_router_request_seconds_bucket", **method, le="10.0") == sent + 1
    assert grew("hongbao_router_request_seconds_sum", **method) > 0
    # Every method's OK series exists from the start, at 0, so rate() sees a zero.
    withdraw = frozenset({"service": WALLET, "method": "Withdraw", "code": "OK"}.items())
    assert after[("hongbao_router_requests_total", withdraw)] == 0


def test_a_moved_leadership_counts_a_redirect_and_a_retry(
    routed: Routed, caplog: pytest.LogCaptureFixture
) -> None:
    harness = routed.harness
    topology = harness.topology
    spec = topology.routers[1]
    shard_id = 1
    user = next(
        f"red-{i}"
        for i in range(1_000)
        if shard_for_user(f"red-{i}", topology.shard_count) == shard_id
    )
    deposit(spec.address, "red-1", user, 10)  # the router learns the shard's leader
    leader = harness.leaders()[shard_id]
    target = next(int(n) for n in topology.replicas_of(shard_id) if int(n) != leader)
    before = scrape(spec)

    async def move() -> tuple[bool, str]:
        async with AdminPool.for_topology(topology) as pool:
            return await transfer_once(
                pool, shard_id, leader, target, election_timeout_ms(topology) * 5
            )

    with caplog.at_level(logging.INFO, logger="hongbao.ops.transfer"):
        moved, error = asyncio.run(move())
    assert moved, error
    logged = [r for r in caplog.records if getattr(r, "event", None) == "leader_transferred"]
    assert [(r.shard, r.from_node, r.to_node) for r in logged] == [(shard_id, leader, target)]
    deposit(spec.address, "red-2", user, 10)  # to the old leader first: NOT_LEADER, then on
    after = scrape(spec)
    assert (
        value(after, "hongbao_router_redirects_total")
        - value(before, "hongbao_router_redirects_total")
        == 1
    )
    assert (
        value(after, "hongbao_router_retries_total") - value(before, "hongbao_router_retries_total")
        >= 1
    )


def test_the_region_state_metric_follows_a_drain(
    routed: Routed, caplog: pytest.LogCaptureFixture
) -> None:
    topology = routed.harness.topology
    spec = topology.routers[0]  # shenzhen's router watches tianjin drain
    assert region_states(scrape(spec), topology) == dict.fromkeys(
        ("shenzhen", "shanghai", "tianjin"), "active"
    )
    during: list[dict[str, str]] = []

    def on_phase(text: str) -> None:
        # The drain's second phase is reported once every node and router follows the
        # ``draining`` version, before any leadership moves: the router must show it now.
        if "follow version" in text:
            during.append(region_states(scrape(spec), topology))

    async def drain_and_back() -> None:
        async with AdminPool.for_topology(topology) as pool:
            report = await drain_region(pool, "tianjin", deadline_s=30.0, on_phase=on_phase)
            assert report.done, report.to_json()
            await asyncio.to_thread(
                wait_until,
                lambda: region_states(scrape(spec), topology)["tianjin"] == "drained",
                FOLLOW_TIMEOUT_S,
                "the router to show tianjin drained",
            )
            await undrain_region(pool, "tianjin")

    with caplog.at_level(logging.INFO, logger="hongbao.ops"):
        asyncio.run(drain_and_back())
    assert during == [{"shenzhen": "active", "shanghai": "active", "tianjin": "draining"}]
    wait_until(
        lambda: region_states(scrape(spec), topology)["tianjin"] == "active",
        FOLLOW_TIMEOUT_S,
        "the router to show tianjin active again",
    )
    events = [getattr(r, "event", None) for r in caplog.records if r.name == "hongbao.ops.drain"]
    assert events == ["drain_started", "drain_propagated", "drain_finished", "region_undrained"]
