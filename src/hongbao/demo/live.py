"""The real demo: three cities on this machine, one of them goes dark, the money keeps moving.

Rules of this module: it tells one story on a real cluster (three ``hongbao node run``
processes from :class:`~hongbao.ops.local.LocalCluster`, one per city, fsync on, fresh
127.0.0.1 ports, a temporary directory), through the same smart client every user has.
Each step prints one readable line. Every wait is a condition with a deadline; the
cluster is killed and the directory removed on every exit path, Ctrl-C included (the
caller owns that, see :func:`run_live_demo`). The story ends with two audits: the
client's (sum of the demo's balances + envelope escrow == deposits - withdrawals, read
linearizably once the cluster is idle) and the offline one over every replica's LMDB
(:func:`hongbao.ops.audit.audit_cluster`: conservation to the fen including money in
flight, replicas identical, journals replayed).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.node.errors import ErrorReason, HongbaoError
from hongbao.ops.audit import audit_cluster
from hongbao.ops.cluster import (
    ClusterOpsError,
    cluster_status,
    move_leaders_home,
    wait_for_leaders,
    wait_for_quiet,
)
from hongbao.ops.local import LocalCluster, write_topology

T = TypeVar("T")

LEADERS_TIMEOUT_S = 20.0
CATCH_UP_TIMEOUT_S = 20.0
QUIET_TIMEOUT_S = 15.0
GRABBERS = 16
SHARES = 10
ENVELOPE_FEN = 20_000  # 200 yuan
DEPOSIT_BOSS_FEN = 100_000  # 1,000 yuan
DEPOSIT_EACH_FEN = 5_000  # 50 yuan
WITHDRAW_FEN = 1_000


def fen(amount_fen: int) -> str:
    whole, cents = divmod(abs(amount_fen), 100)
    return f"{'-' if amount_fen < 0 else ''}{whole:,}.{cents:02d}"


@dataclass(slots=True)
class DemoLedger:
    """What the demo itself did, to check conservation from the client's side."""

    users: set[str] = field(default_factory=set)
    envelopes: list[str] = field(default_factory=list)
    deposits_fen: int = 0
    withdrawals_fen: int = 0


@dataclass(slots=True)
class DemoResult:
    ok: bool = False
    recovery_s: float | None = None
    catch_up_s: float | None = None
    audit_line: str = ""


Say = Callable[[str], None]


class Story:
    def __init__(self, cluster: LocalCluster, client: HongbaoClient, say: Say, seed: int) -> None:
        self.cluster = cluster
        self.client = client
        self.topology = cluster.topology
        self.say = say
        self.rng = random.Random(seed)
        self.ledger = DemoLedger()
        self.result = DemoResult()
        self.applied_at_kill: dict[int, int] = {}

    def city_of(self, node_id: int) -> str:
        return self.topology.node(node_id).region

    def node_in(self, city: str) -> int:
        return int(self.topology.nodes_in(city)[0].node_id)

    def user_led_from(self, node_id: int, prefix: str) -> str:
        """A user id whose wallet's shard has its home (leader) on ``node_id``."""
        for i in range(10_000):
            user = f"{prefix}{i}"
            if int(self.topology.home_leader_of(self.client.user_shard(user))) == node_id:
                return user
        raise AssertionError(f"no user homed on node {node_id}")

    # -- the steps -----------------------------------------------------------------------

    async def run(self) -> DemoResult:
        await self.start()
        boss, staff = await self.deposits()
        await self.lucky_envelope(boss, staff, "hongbao for the team")
        await self.cross_city_transfer()
        victim = await self.city_outage(boss)
        await self.still_working(boss, staff, victim)
        await self.come_back(victim)
        await self.audit()
        return self.result

    async def start(self) -> None:
        started = time.monotonic()
        await wait_for_leaders(self.client, LEADERS_TIMEOUT_S)
        elected_s = time.monotonic() - started
        await move_leaders_home(self.client, LEADERS_TIMEOUT_S)
        leaders = (await cluster_status(self.client)).leaders()
        per_city = []
        for region in self.topology.regions:
            node_id = self.node_in(region.name)
            led = sorted(s for s, n in leaders.items() if n == node_id)
            per_city.append(f"{region.name} {_listing(led)}")
        self.say(
            f"{len(self.topology.regions)} cities, one node each (fsync on), "
            f"{self.topology.shard_count} shards x {self.topology.replication_factor} replicas; "
            f"leaders elected in {elected_s:.2f} s; active-active, each city leads its own "
            "shards: " + "; ".join(per_city)
        )

    async def deposits(self) -> tuple[str, list[str]]:
        boss = self.user_led_from(self.node_in(self.topology.regions[0].name), "laoban-")
        staff = [f"staff-{i:02d}" for i in range(GRABBERS)]
        deposits = [(boss, DEPOSIT_BOSS_FEN)] + [(u, DEPOSIT_EACH_FEN) for u in staff]
        await asyncio.gather(*(self.client.deposit(u, a) for u, a in deposits))
        self.ledger.users.update(u for u, _ in deposits)
        self.ledger.deposits_fen += sum(a for _, a in deposits)
        await self.client.withdraw(staff[0], WITHDRAW_FEN)
        self.ledger.withdrawals_fen += WITHDRAW_FEN
        self.say(
            f"deposits: {boss} {fen(DEPOSIT_BOSS_FEN)} yuan, {len(staff)} staff "
            f"{fen(DEPOSIT_EACH_FEN)} yuan each; {staff[0]} withdrew {fen(WITHDRAW_FEN)} yuan"
        )
        return boss, staff

    async def lucky_envelope(self, sender: str, grabbers: list[str], what: str) -> None:
        sent = await self.client.send_envelope(sender, ENVELOPE_FEN, SHARES, lucky=True)
        envelope_id = sent.envelope_id
        self.ledger.envelopes.append(envelope_id)
        shard = self.client.envelope_shard(envelope_id)
        city = self.city_of(self.client.leader_guess(shard))
        self.say(
            f"{sender} sends a lucky envelope ({what}) {envelope_id}: "
            f"{fen(ENVELOPE_FEN)} yuan in {SHARES} shares, served in {city}"
        )
        crowd = list(grabbers)
        self.rng.shuffle(crowd)
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(self.client.grab(envelope_id, user) for user in crowd), return_exceptions=True
        )
        elapsed_ms = (time.monotonic() - started) * 1000
        got = [(u, o) for u, o in zip(crowd, outcomes, strict=True) if not _failed(o)]
        empty = [
            o
            for o in outcomes
            if isinstance(o, HongbaoError) and o.reason is ErrorReason.ENVELOPE_EMPTY
        ]
        other = [o for o in outcomes if _failed(o) and o not in empty]
        if other:
            raise RuntimeError(f"unexpected grab failures: {other}")
        view = await self.client.show(envelope_id)
        amounts = " ".join(fen(g.amount_fen) for g in view.grabs)
        best = next(g for g in view.grabs if g.ordinal == view.best_luck_ordinal)
        self.say(
            f"{len(crowd)} people grab at once: {len(got)} got a share in {elapsed_ms:.0f} ms "
            f"({amounts} yuan), {len(empty)} too late; best luck {best.user_id} "
            f"{fen(best.amount_fen)} yuan"
        )

    async def cross_city_transfer(self) -> None:
        first, second = (self.node_in(r.name) for r in self.topology.regions[:2])
        payer = self.user_led_from(first, "zhang-")
        payee = self.user_led_from(second, "li-")
        await self.client.deposit(payer, 10_000)
        self.ledger.users.update((payer, payee))
        self.ledger.deposits_fen += 10_000
        started = time.monotonic()
        response = await self.client.transfer(payer, payee, 8_888)
        elapsed_ms = (time.monotonic() - started) * 1000
        await _until(lambda: self._balance(payee), lambda b: b == 8_888, 10.0, "the credit")
        self.say(
            f"cross-city transfer: {payer} ({self.city_of(first)}) -> {payee} "
            f"({self.city_of(second)}) 88.88 yuan, acknowledged in {elapsed_ms:.1f} ms"
            + ("; the credit crossed shards through the outbox" if response.cross_shard else "")
        )

    async def _balance(self, user: str) -> int:
        """The user's balance, linearizable; 0 for a wallet no money has reached yet."""
        try:
            return int((await self.client.balance(user)).balance_fen)
        except HongbaoError as error:
            if error.reason is ErrorReason.NOT_FOUND:
                return 0
            raise

    async def city_outage(self, boss: str) -> int:
        """kill -9 the node that leads the boss's shard: a whole city goes dark."""
        status = await cluster_status(self.client)
        leaders = status.leaders()
        victim = leaders[self.client.user_shard(boss)]
        led = sorted(s for s, n in leaders.items() if n == victim)
        self.applied_at_kill = {
            s.shard_id: int(s.applied_index)
            for node in status.nodes
            if int(node.spec.node_id) == victim and node.status is not None
            for s in node.status.shards
        }
        started = time.monotonic()
        self.cluster.kill(victim)
        self.say(
            f"city outage: kill -9 the {self.city_of(victim)} node (node {victim}), "
            f"leader of shards {_listing(led)}"
        )
        after = await wait_for_leaders(self.client, LEADERS_TIMEOUT_S, without=[victim])
        self.result.recovery_s = time.monotonic() - started
        moved = ", ".join(f"{s} to {self.city_of(after.leaders()[s])}" for s in led)
        self.say(
            f"every shard has a leader again {self.result.recovery_s:.2f} s after the kill "
            f"({moved})"
        )
        return victim

    async def still_working(self, boss: str, staff: list[str], victim: int) -> None:
        started = time.monotonic()
        retries = self.client.retries
        await self.lucky_envelope(boss, staff, f"during the {self.city_of(victim)} outage")
        payer, payee = staff[1], boss
        response = await self.client.transfer(payer, payee, 1_234)
        self.say(
            f"transfers keep working: {payer} -> {payee} 12.34 yuan"
            + (" across shards" if response.cross_shard else "")
            + f"; {time.monotonic() - started:.2f} s for these steps, no request failed "
            f"(the client retried {self.client.retries - retries} times, at the new leaders)"
        )

    async def come_back(self, victim: int) -> None:
        commits: dict[int, int] = {}
        for node in (await cluster_status(self.client)).nodes:
            for shard in node.status.shards if node.status is not None else ():
                commits[shard.shard_id] = max(commits.get(shard.shard_id, 0), shard.commit_index)
        missed = sum(commits.get(s, 0) - i for s, i in self.applied_at_kill.items())
        started = time.monotonic()
        self.cluster.start([victim])
        start_s = time.monotonic() - started  # a new process: imports, LMDB, gRPC server
        await _until(
            lambda: self._entries_behind(victim),
            lambda missing: missing == 0,
            CATCH_UP_TIMEOUT_S,
            f"node {victim} to catch up",
        )
        self.result.catch_up_s = time.monotonic() - started
        moved = await move_leaders_home(self.client, LEADERS_TIMEOUT_S)
        self.say(
            f"the {self.city_of(victim)} node restarts ({start_s:.2f} s to start) and catches "
            f"up on the {missed} entries it missed, {self.result.catch_up_s:.2f} s in all; "
            f"shards {_listing(moved)} move back to {self.city_of(victim)} (leadership transfer)"
        )

    async def _entries_behind(self, node_id: int) -> int:
        """How many committed entries ``node_id`` has yet to apply, over all its shards."""
        status = await cluster_status(self.client)
        commit: dict[int, int] = {}
        mine: dict[int, int] = {}
        for node in status.nodes:
            if node.status is None:
                continue
            for shard in node.status.shards:
                commit[shard.shard_id] = max(commit.get(shard.shard_id, 0), shard.commit_index)
                if int(node.spec.node_id) == node_id:
                    mine[shard.shard_id] = shard.applied_index
        hosted = self.topology.shards_on(node_id)
        if len(mine) < len(hosted):
            return sum(commit.get(s, 0) for s in hosted)  # not answering yet
        return sum(max(0, commit.get(s, 0) - mine[s]) for s in hosted)

    async def audit(self) -> None:
        if not await wait_for_quiet(self.client, QUIET_TIMEOUT_S):
            raise RuntimeError("the cluster did not go idle for the audit")
        balances = await asyncio.gather(*(self._balance(u) for u in sorted(self.ledger.users)))
        escrow = 0
        for envelope_id in self.ledger.envelopes:
            escrow += (await self.client.show(envelope_id)).remaining_fen
        held = sum(balances) + escrow
        net = self.ledger.deposits_fen - self.ledger.withdrawals_fen
        if held != net:
            raise RuntimeError(f"client-side conservation failed: held {held} != {net}")
        self.result.audit_line = (
            f"balances {fen(sum(balances))} + escrow {fen(escrow)} == deposits "
            f"{fen(self.ledger.deposits_fen)} - withdrawals {fen(self.ledger.withdrawals_fen)} "
            "yuan"
        )


def _listing(items: list[int]) -> str:
    return ",".join(map(str, items)) or "none"


def _failed(outcome: object) -> bool:
    return isinstance(outcome, BaseException)


async def _until(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float, what: str
) -> T:
    """Poll ``probe`` until ``done`` holds for its value; TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


def run_live_demo(
    template: Path, say: Say, *, seed: int = 2024, stop_timeout_s: float = 15.0
) -> DemoResult:
    """Start the cluster in a temporary directory, tell the story, audit, clean up.

    The nodes are killed and the directory removed however this ends (Ctrl-C included).
    """
    started = time.monotonic()
    temporary = Path(tempfile.mkdtemp(prefix="hongbao-demo-"))
    try:
        topology_path = write_topology(temporary / "topology.toml", template=template)
        data_dir = temporary / "data"
        with LocalCluster(topology_path, data_dir) as cluster:
            cluster.start()
            result = asyncio.run(_tell(cluster, say, seed))
            _stop_together(cluster, stop_timeout_s)
            report = audit_cluster(data_dir, cluster.topology, deep=True, require_drained=True)
            if not report.ok or report.ledger is None:
                say("[red]offline audit FAILED[/red]:\n" + report.describe())
                return result
            ledger = report.ledger
            say(
                f"[green]conservation audit passed[/green]: balances {fen(ledger.balances_fen)}"
                f" + escrow {fen(ledger.escrow_fen)} + in flight {fen(ledger.undelivered_fen)}"
                f" == deposits {fen(ledger.deposits_fen)} - withdrawals "
                f"{fen(ledger.withdrawals_fen)} yuan, exact to the fen (client side, and "
                f"offline over all {len(report.replicas)} replicas: identical, journals "
                f"replayed); {time.monotonic() - started:.1f} s in all"
            )
            result.ok = True
            return result
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _stop_together(cluster: LocalCluster, timeout_s: float) -> None:
    """SIGTERM every node at once (each then closes its peer streams at once), and wait."""
    for node_id in cluster.node_ids:
        cluster.signal(node_id, signal.SIGTERM)
    for node_id in cluster.node_ids:
        try:
            code = cluster.processes[node_id].wait(timeout_s)
        except subprocess.TimeoutExpired:
            tail = cluster.tail(node_id)
            raise RuntimeError(f"node {node_id} ignored SIGTERM:\n{tail}") from None
        if code != 0:
            raise RuntimeError(f"node {node_id} exited with {code}:\n{cluster.tail(node_id)}")


async def _tell(cluster: LocalCluster, say: Say, seed: int) -> DemoResult:
    options = ClientOptions(timeout_s=2.0, attempts_max=20)
    async with HongbaoClient(cluster.topology, options) as client:
        try:
            return await Story(cluster, client, say, seed).run()
        except (HongbaoError, ClusterOpsError) as error:
            raise RuntimeError(str(error)) from error
