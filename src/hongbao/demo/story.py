"""The steps of the live demo's story, each printing one readable line (or a few).

Rules of this module: the client is the SDK in router mode (what a user has); the
operator's view and actions (status, drain, balance) go through an
:class:`~hongbao.ops.admin_pool.AdminPool`, as the ``hongbao`` commands do. A step that
does not go as told raises; nothing is printed that was not measured.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from hongbao.client.sdk import HongbaoClient
from hongbao.demo.maintenance import drain_and_return
from hongbao.node.errors import ErrorReason, HongbaoError
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.local import LocalCluster
from hongbao.ops.status import cluster_status, wait_for_leaders, wait_for_quiet

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

Say = Callable[[str], None]


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
    drain_s: float | None = None
    drain_failed_requests: int | None = None
    audit_line: str = ""


class Story:
    def __init__(
        self,
        cluster: LocalCluster,
        client: HongbaoClient,
        pool: AdminPool,
        say: Say,
        seed: int,
    ) -> None:
        self.cluster = cluster  # the nodes and the routers, its children
        self.client = client  # through the routers, its own city's first
        self.pool = pool  # the operator's Admin channels: status, drain, balance
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

    def router_in(self, city: str) -> int:
        return int(self.topology.routers_in(city)[0].router_id)

    def user_led_from(self, node_id: int, prefix: str) -> str:
        """A user id whose wallet's shard has its home (leader) on ``node_id``."""
        for i in range(10_000):
            user = f"{prefix}{i}"
            if int(self.topology.home_leader_of(self.client.user_shard(user))) == node_id:
                return user
        raise AssertionError(f"no user homed on node {node_id}")

    async def leaders(self) -> dict[int, int]:
        return (await cluster_status(self.pool)).leaders()

    # -- the steps -----------------------------------------------------------------------

    async def run(self) -> DemoResult:
        await self.start()
        boss, staff = await self.deposits()
        await self.after_bootstrap()
        await self.lucky_envelope(boss, staff, "hongbao for the team")
        await self.cross_city_transfer()
        await self.maintenance(self.topology.regions[1].name)
        victim = await self.city_outage(boss)
        await self.still_working(boss, staff, victim)
        await self.come_back(victim)
        await self.client_audit()
        return self.result

    async def after_bootstrap(self) -> None:
        """A step between bootstrap (leaders, funded users) and the story: none here; the
        geo demo switches its latency on here (never during start-up: CockroachDB #92231)."""

    async def start(self) -> None:
        started = time.monotonic()
        await wait_for_leaders(self.pool, LEADERS_TIMEOUT_S)
        elected_s = time.monotonic() - started
        await move_leaders_home(self.pool, LEADERS_TIMEOUT_S)
        leaders = await self.leaders()
        per_city = []
        for region in self.topology.regions:
            node_id = self.node_in(region.name)
            led = sorted(s for s, n in leaders.items() if n == node_id)
            per_city.append(f"{region.name} {_listing(led)}")
        self.say(
            f"{len(self.topology.regions)} cities, one node and one router each (fsync on), "
            f"{self.topology.shard_count} shards x {self.topology.replication_factor} replicas; "
            f"leaders elected in {elected_s:.2f} s; active-active, each city leads its own "
            "shards: " + "; ".join(per_city)
        )
        router = self.client.via_router
        if router is not None:
            self.say(f"the demo's client lives in {router.region}: it talks only to the "
                     f"{router.region} router, which forwards to the shard leaders")  # fmt: skip

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
        city = self.city_of((await self.leaders())[self.client.envelope_shard(envelope_id)])
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
        got = [o for o in outcomes if not isinstance(o, BaseException)]
        empty = [
            o
            for o in outcomes
            if isinstance(o, HongbaoError) and o.reason is ErrorReason.ENVELOPE_EMPTY
        ]
        other = [o for o in outcomes if isinstance(o, BaseException) and o not in empty]
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

    async def maintenance(self, city: str) -> None:
        """Drain ``city`` under a steady load through the routers, then bring it back."""
        done = await drain_and_return(self.client, self.pool, city, self.say)
        self.ledger.users.update(done.users)
        self.ledger.deposits_fen += done.deposited_fen
        self.result.drain_s = done.drain.elapsed_s
        self.result.drain_failed_requests = done.load.failed
        if done.load.failed:
            raise RuntimeError(f"{done.load.failed} requests failed during the drain")

    async def _balance(self, user: str) -> int:
        """The user's balance, linearizable; 0 for a wallet no money has reached yet."""
        try:
            return int((await self.client.balance(user)).balance_fen)
        except HongbaoError as error:
            if error.reason is ErrorReason.NOT_FOUND:
                return 0
            raise

    async def city_outage(self, boss: str) -> int:
        """kill -9 the node leading the boss's shard, and its city's router: a city goes dark."""
        status = await wait_for_leaders(self.pool, LEADERS_TIMEOUT_S)  # none mid-election
        leaders = status.leaders()
        victim = leaders[self.client.user_shard(boss)]
        city = self.city_of(victim)
        led = sorted(s for s, n in leaders.items() if n == victim)
        self.applied_at_kill = {
            s.shard_id: int(s.applied_index)
            for node in status.nodes
            if int(node.spec.node_id) == victim and node.status is not None
            for s in node.status.shards
        }
        started = time.monotonic()
        self.cluster.kill(victim)
        self.cluster.kill_router(self.router_in(city))
        self.say(
            f"city outage: kill -9 the {city} node (node {victim}, leader of shards "
            f"{_listing(led)}) and the {city} router"
        )
        after = await wait_for_leaders(self.pool, LEADERS_TIMEOUT_S, without=[victim])
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
        failovers = self.client.router_failovers
        await self.lucky_envelope(boss, staff, f"during the {self.city_of(victim)} outage")
        payer, payee = staff[1], boss
        response = await self.client.transfer(payer, payee, 1_234)
        router = self.client.via_router
        switched = ""
        if self.client.router_failovers > failovers and router is not None:
            switched = f"; the client switched to the {router.region} router"
        self.say(
            f"transfers keep working: {payer} -> {payee} 12.34 yuan"
            + (" across shards" if response.cross_shard else "")
            + f"; {time.monotonic() - started:.2f} s for these steps, no request failed "
            f"(the client retried {_times(self.client.retries - retries)}{switched})"
        )

    async def come_back(self, victim: int) -> None:
        commits: dict[int, int] = {}
        for node in (await cluster_status(self.pool)).nodes:
            for shard in node.status.shards if node.status is not None else ():
                commits[shard.shard_id] = max(commits.get(shard.shard_id, 0), shard.commit_index)
        missed = sum(commits.get(s, 0) - i for s, i in self.applied_at_kill.items())
        city = self.city_of(victim)
        started = time.monotonic()
        self.cluster.start([victim])
        self.cluster.start_routers([self.router_in(city)])
        start_s = time.monotonic() - started  # new processes: imports, LMDB, gRPC servers
        await _until(
            lambda: self._entries_behind(victim),
            lambda missing: missing == 0,
            CATCH_UP_TIMEOUT_S,
            f"node {victim} to catch up",
        )
        self.result.catch_up_s = time.monotonic() - started
        moved = await move_leaders_home(self.pool, LEADERS_TIMEOUT_S)
        shards = sorted(g for g in moved if g < self.topology.shard_count)
        self.say(
            f"the {city} node and router restart ({start_s:.2f} s to start); the node catches "
            f"up on the {missed} entries it missed, {self.result.catch_up_s:.2f} s in all; "
            f"shards {_listing(shards)} move back to {city} (leadership transfer)"
        )

    async def _entries_behind(self, node_id: int) -> int:
        """How many committed entries ``node_id`` has yet to apply, over all its shards."""
        status = await cluster_status(self.pool)
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

    async def client_audit(self) -> None:
        """What the demo's client put in must be what its users and envelopes hold."""
        if not await wait_for_quiet(self.pool, QUIET_TIMEOUT_S):
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


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _listing(items: list[int]) -> str:
    return ",".join(map(str, items)) or "none"


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
