"""``hongbao router run --log-format json``: every line the router writes is one JSON
object naming the router, and a forwarded request's lines carry its shard and request id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from hongbao.config.routers import RouterSpec
from hongbao.ledger.sharding import shard_for_user
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, ledger_pb2_grpc
from tests.cluster.support import running_cluster
from tests.router.support import Routers, routers_of

pytestmark = pytest.mark.cluster


@dataclass
class JsonRouter:
    routers: Routers
    spec: RouterSpec
    shard_count: int

    def lines(self) -> list[dict[str, Any]]:
        """Every line of the router's output (stdout and stderr), each parsed as JSON."""
        text = self.routers.log_path(self.spec.router_id).read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def json_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsonRouter]:
    root: Path = tmp_path_factory.mktemp("router-logs")
    with running_cluster(root) as harness:
        config = harness.cluster.config_path
        with routers_of(config, harness.topology, root) as routers:
            spec = harness.topology.routers[0]
            routers.start(spec, "--log-format", "json", "--log-level", "debug")
            yield JsonRouter(routers, spec, harness.topology.shard_count)


def test_every_line_is_json_naming_the_router_and_requests_carry_their_id(
    json_router: JsonRouter,
) -> None:
    spec = json_router.spec
    user = "log-alice"
    with grpc.insecure_channel(spec.address) as channel:
        wallet = ledger_pb2_grpc.WalletStub(channel)
        wallet.Deposit(
            ledger_pb2.DepositRequest(request_id="log-req-1", user_id=user, amount_fen=500),
            timeout=10,
        )
        with pytest.raises(grpc.RpcError):
            wallet.Deposit(
                ledger_pb2.DepositRequest(request_id="log-bad-1", user_id=user, amount_fen=0),
                timeout=10,
            )
    assert json_router.routers.stop(spec.router_id) == 0  # its last lines are written
    lines = json_router.lines()
    assert lines, "the router wrote nothing"
    for line in lines:
        assert line["component"] == "router", line
        assert line["router"] == spec.router_id, line
        assert line["region"] == spec.region, line
        assert {"ts", "level", "logger", "msg"} <= line.keys(), line
    assert any("serving on" in line["msg"] for line in lines)
    assert any("stopped" in line["msg"] for line in lines)
    shard = shard_for_user(user, json_router.shard_count)
    answered = [line for line in lines if line.get("request_id") == "log-req-1"]
    assert answered, "no line carries the forwarded request's id"
    assert {line["shard"] for line in answered} == {shard}
    assert any(line["level"] == "debug" and "answered" in line["msg"] for line in answered)
    refused = [line for line in lines if line.get("request_id") == "log-bad-1"]
    assert any("INVALID_AMOUNT" in line["msg"] for line in refused), refused
