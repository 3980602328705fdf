"""Against real node processes: ``hongbao audit``, ``hongbao request status`` and history
pages, with their outputs and exit codes.

One 3-node cluster (12 shards, every shard on every node) serves the module; the last
test stops two nodes, so no shard has a quorum, and checks the "not judged" and
"unknown" exits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hongbao.cli.audit import audit
from hongbao.cli.request import request
from hongbao.cli.wallet import wallet
from hongbao.client.sdk import HongbaoClient
from hongbao.ledger.sharding import shard_for_user
from hongbao.node.errors import ErrorReason, HongbaoError
from hongbao.ops.live_audit import live_audit
from hongbao.ops.local import LocalCluster, write_topology
from tests.cluster.support import wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "configs" / "local.toml"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    directory = tmp_path_factory.mktemp("audit-cluster")
    path = write_topology(directory / "topology.toml", template=TEMPLATE)
    with LocalCluster(path, directory / "data", no_fsync=True) as running:
        running.start()
        running.start_routers()  # the CLI's clients go through them (configs/local.toml)
        first = asyncio.run(live_audit(running.topology, timeout_s=60))  # every shard led
        assert first.ok, (first.unreachable, first.problems)
        yield running


def invoke(command: Any, *args: str) -> Result:
    return CliRunner().invoke(command, list(args))


def as_json(result: Result) -> dict[str, Any]:
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def users_across_shards(shard_count: int, count: int) -> list[str]:
    """``count`` users spread over distinct shards (as far as they go)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < min(count, shard_count):
        user = f"la-{n}"
        found.setdefault(shard_for_user(user, shard_count), user)
        n += 1
    return list(found.values())


def test_request_status_applied_refused_not_applied_and_fenced(cluster: LocalCluster) -> None:
    config = str(cluster.config_path)

    async def setup() -> None:
        async with HongbaoClient(cluster.topology) as client:
            await client.deposit("rs-user", 500, "rs-applied")
            with pytest.raises(HongbaoError):
                await client.withdraw("rs-user", 9_999, "rs-poor")

    asyncio.run(setup())
    applied = invoke(request, "status", "rs-applied", "--user", "rs-user", "--config", config,
                     "--json")  # fmt: skip
    assert applied.exit_code == 0, applied.output
    assert as_json(applied)["outcome"] == "applied"
    assert as_json(applied)["result"] == {"kind": "deposit", "balanceFen": "500"}
    poor = invoke(request, "status", "rs-poor", "--user", "rs-user", "--config", config)
    assert poor.exit_code == 0, poor.output
    assert "first result was a refusal: INSUFFICIENT_FUNDS" in poor.stdout
    lost = invoke(request, "status", "rs-lost", "--user", "rs-user", "--config", config)
    assert lost.exit_code == 3, lost.output
    assert "not applied" in lost.stdout

    async def late_retry() -> HongbaoError:
        async with HongbaoClient(cluster.topology) as client:
            try:
                await client.deposit("rs-user", 1, "rs-lost")
            except HongbaoError as error:
                return error
        raise AssertionError("a fenced request id was applied")

    assert asyncio.run(late_retry()).reason is ErrorReason.REQUEST_FENCED
    again = invoke(request, "status", "rs-lost", "--user", "rs-user", "--config", config,
                   "--json")  # fmt: skip
    assert (again.exit_code, as_json(again)["outcome"]) == (3, "not_applied")
    malformed = invoke(request, "status", "has space", "--user", "rs-user", "--config", config)
    assert malformed.exit_code == 2
    assert "Exit codes" in invoke(request, "status", "--help").stdout


def test_history_pages_through_the_cli(cluster: LocalCluster) -> None:
    config = str(cluster.config_path)
    payers = users_across_shards(cluster.topology.shard_count, 6)

    async def traffic() -> None:
        async with HongbaoClient(cluster.topology) as client:
            for payer in payers:
                await client.deposit(payer, 1_000)
            for round_number in range(4):  # credits from several shards' outboxes
                for payer in payers:
                    await client.transfer(payer, "hp-user", 1 + round_number)

    asyncio.run(traffic())
    expected = 4 * len(payers)
    def walk() -> dict[str, Any] | None:  # cross-shard credits land shortly: wait for all
        walked = as_json(invoke(wallet, "history", "hp-user", "--all", "--limit", "7",
                                "--config", config, "--json"))  # fmt: skip
        return walked if len(walked["postings"]) == expected else None

    walked = wait_for(walk, 30.0, f"{expected} postings of hp-user", poll_s=0.1)
    assert [p["seq"] for p in walked["postings"]] == list(range(expected, 0, -1))
    assert walked["next_page_token"] == ""
    first = as_json(invoke(wallet, "history", "hp-user", "--limit", "7", "--config", config,
                           "--json"))  # fmt: skip
    assert [p["seq"] for p in first["postings"]] == list(range(expected, expected - 7, -1))
    token = first["next_page_token"]
    second = as_json(invoke(wallet, "history", "hp-user", "--limit", "7", "--page-token", token,
                            "--config", config, "--json"))  # fmt: skip
    assert second["postings"][0]["seq"] == expected - 7
    human = invoke(wallet, "history", "hp-user", "--limit", "7", "--config", config)
    assert f"--page-token {token}" in human.stdout
    bad = invoke(wallet, "history", "hp-user", "--page-token", "garbage!", "--config", config)
    assert bad.exit_code == 3
    assert "INVALID_REQUEST" in bad.stderr
    other = invoke(wallet, "history", payers[0], "--page-token", token, "--config", config)
    assert other.exit_code == 3
    assert "another user" in other.stderr


def test_audit_of_a_running_cluster_passes(cluster: LocalCluster) -> None:
    config = str(cluster.config_path)
    result = invoke(audit, "--config", config, "--json", "--timeout-s", "30")
    assert result.exit_code == 0, result.output
    report = as_json(result)
    assert report["ok"] is True
    assert report["totals"]["held_fen"] == report["totals"]["net_in_fen"] > 0
    assert len(report["shards"]) == cluster.topology.shard_count
    assert report["totals"]["outbox_fen"] == 0
    address = cluster.topology.nodes[1].address
    by_address = invoke(audit, "--address", address, "--timeout-s", "30")
    assert by_address.exit_code == 0, by_address.output
    assert "ok" in by_address.stdout
    both = invoke(audit, "--address", address, "--config", config)
    assert both.exit_code == 2
    assert "Exit codes" in invoke(audit, "--help").stdout


def test_without_a_quorum_the_audit_is_not_judged_and_status_is_unknown(
    cluster: LocalCluster,
) -> None:
    config = str(cluster.config_path)
    survivors = cluster.node_ids[:1]
    for node_id in cluster.node_ids[1:]:
        cluster.stop(node_id)
    assert [n for n in cluster.node_ids if cluster.is_running(n)] == survivors
    result = invoke(audit, "--config", config, "--timeout-s", "2", "--json")
    assert result.exit_code == 3, result.output
    report = as_json(result)
    assert report["judged"] is False
    assert report["unreachable"]
    unknown = invoke(request, "status", "q-1", "--user", "rs-user", "--config", config,
                     "--timeout-s", "0.5")  # fmt: skip
    assert unknown.exit_code == 4, unknown.output
    assert "unknown" in unknown.stderr
