"""The client side of the multi-host test, run inside a namespace (``ip netns exec``).

``python -m tests.multihost.probe COMMAND TOPOLOGY [ARGS]`` prints one JSON object on stdout:

- ``leaders``: wait (bounded) until every shard has a leader; the leader of each shard,
  node-direct (Admin.Status of every node).
- ``traffic REGION STARTED STOP``: deposits and transfers through the routers only,
  until the file STOP exists; the failures, listed.
- ``serve``: leaders home, then deposits and cross-shard transfers node-direct, a lucky
  envelope sent and grabbed through a router (the client's own region's), every balance
  read back through the router; the money the probe moved must add up to the fen.

It is a separate process because it must live in another network namespace than the
test; it exits non-zero (with a traceback on stderr) when anything does not hold.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.topology import load_topology
from hongbao.node.errors import ErrorReason, HongbaoError
from hongbao.ops.cluster import move_leaders_home, wait_for_leaders, wait_for_quiet

TIMEOUT_S = 30.0
DEPOSIT_FEN = 10_000
GRABBERS = 6
SHARES = 4
TRAFFIC_S_MAX = 60.0


async def leaders(path: Path) -> dict[str, object]:
    topology = load_topology(path)
    async with HongbaoClient(topology, ClientOptions(timeout_s=2.0)) as client:
        status = await wait_for_leaders(client, TIMEOUT_S)
        return {
            "leaders": {str(s): n for s, n in status.leaders().items()},
            "addresses": {str(n.spec.node_id): n.spec.address for n in status.nodes if n.up},
        }


async def serve(path: Path, region: str) -> dict[str, object]:
    topology = load_topology(path)
    options = ClientOptions(timeout_s=2.0, attempts_max=20, region=region)
    async with (
        HongbaoClient(topology, options) as direct,
        HongbaoClient.via_routers(topology, options, region=region) as routed,
    ):
        await wait_for_leaders(direct, TIMEOUT_S)
        moved = await move_leaders_home(direct, TIMEOUT_S)
        users = [f"mh-user-{i}" for i in range(GRABBERS + 2)]
        for user in users:
            await direct.deposit(user, DEPOSIT_FEN)
        payer, payee = users[0], users[1]
        transfer = await direct.transfer(payer, payee, 1_234)
        sent = await routed.send_envelope(payer, 400, SHARES, lucky=True)
        taken, empty = 0, 0
        for user in users[2:]:
            try:
                await routed.grab(sent.envelope_id, user)
                taken += 1
            except HongbaoError as error:
                if error.reason is not ErrorReason.ENVELOPE_EMPTY:
                    raise
                empty += 1
        if not await wait_for_quiet(direct, TIMEOUT_S):  # cross-shard credits have landed
            raise AssertionError("the cluster did not go quiet")
        balances = {u: int((await routed.balance(u)).balance_fen) for u in users}
        via = routed.via_router
    total = sum(balances.values())
    expected = DEPOSIT_FEN * len(users)
    if total != expected:
        raise AssertionError(f"balances add up to {total} fen, not {expected}: {balances}")
    return {
        "moved_home": moved,
        "cross_shard": transfer.cross_shard,
        "router": None if via is None else via.address,
        "grabs_taken": taken,
        "grabs_empty": empty,
        "total_fen": total,
    }


async def traffic(path: Path, region: str, started: Path, stop: Path) -> dict[str, object]:
    """Deposits and transfers through the routers only, until ``stop`` exists (at most
    TRAFFIC_S_MAX); ``started`` is written after the first acknowledged pair."""
    topology = load_topology(path)
    options = ClientOptions(timeout_s=2.0, attempts_max=20, region=region)
    failed: list[str] = []
    ok = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TRAFFIC_S_MAX
    async with HongbaoClient.via_routers(topology, options, region=region) as routed:
        i = 0
        while not stop.exists() and loop.time() < deadline:
            i += 1
            try:
                await routed.deposit(f"mh-traffic-{i}", 100)
                await routed.transfer(f"mh-traffic-{i}", f"mh-traffic-{i + 1}", 1)
                ok += 2
            except HongbaoError as error:
                failed.append(f"{error.reason.value}: {error}")
            if ok and not started.exists():
                started.write_text("started\n")
        via = routed.via_router
    return {"ok": ok, "failed": failed, "router": None if via is None else via.address}


def main(argv: list[str]) -> int:
    command, path = argv[0], Path(argv[1])
    if command == "leaders":
        result = asyncio.run(leaders(path))
    elif command == "traffic":
        result = asyncio.run(traffic(path, argv[2], Path(argv[3]), Path(argv[4])))
    elif command == "serve":
        result = asyncio.run(serve(path, argv[2]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
