"""The chaos workload: red-envelope traffic through the routers, every answer in the history.

Why its own client loop and not the SDK's: the history must say exactly what a caller was
told, including *which* region answered and whether an earlier attempt may have applied
the request. The SDK hides both. So each caller talks to its region's router on raw
stubs, and fails over to another region's router only when its own is gone (a bare
UNAVAILABLE: refused or dropped; a deadline is the cluster's slowness, not the router's
absence), with the same request bytes, so the same request id. Once an attempt may have
applied a request (no answer from the router: a deadline, a dropped connection), a later
attempt's routing refusal (NOT_LEADER, UNAVAILABLE, OVERLOADED) says nothing about that
first one, and the op stays ``info`` (the rule of :class:`hongbao.client.routing.Outcome`).
A business answer of a later attempt is final either way: the ledger's idempotency table
answers a retried id with its first result.

What it issues: deposits, withdrawals, transfers (same shard and across shards), lucky and
fixed envelope sends, and grabs of envelopes whose send was acknowledged, each user at
most once per envelope on the client side, except a rare deliberate second grab that the
ledger must refuse (ALREADY_GRABBED). Amounts stay inside the topology's ``[limits]``.
Request ids are ``c{seed}-{op_id}``, user ids ``c{seed}-u{n}``: unique per run, never
shared by two runs of different seeds. ``rate_ops_s`` paces all callers together (a token
bucket); 0 lets each caller send its next call as soon as the last one is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import grpc
from google.protobuf.message import Message as ProtoMessage

from hongbao.chaos.answers import ATTEMPT_LOCAL, Answer, rpc_answer, settle
from hongbao.chaos.history import KINDS, HistoryWriter, Kind, Op
from hongbao.chaos.suite import Workload
from hongbao.config.routers import RouterSpec
from hongbao.config.topology import Topology
from hongbao.ledger.sharding import shard_for_user
from hongbao.net.channels import channel_options, open_channel
from hongbao.node.cluster_guard import CLUSTER_ID_METADATA_KEY, cluster_id_of
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, ledger_pb2_grpc
from hongbao.security.tls import client_credentials

USERS_MAX: Final = 1_000_000
CALLERS_MAX: Final = 4_096
BATCH_MAX: Final = 10_000  # a router's (and a node's) most operations per Batch call
PREPARE_TIMEOUT_S: Final = 60.0
PREPARE_BATCH: Final = 100  # opening deposits per Batch call
PREPARE_CALLS_MAX: Final = 8  # opening-deposit calls in flight at once
PREPARE_CALL_S_MIN: Final = 2.0  # an opening deposit's deadline, whatever call_timeout_ms says
BACKOFF_S_MIN: Final = 0.05
BACKOFF_S_MAX: Final = 1.0
ENVELOPES_OPEN_MAX: Final = 2_000  # envelopes remembered for grabs; beyond, one is forgotten
GRAB_PICKS_MAX: Final = 8  # tries to find an envelope with shares, or a fresh grabber
DOUBLE_GRAB_SHARE: Final = 0.01  # grabs that deliberately repeat an acknowledged grabber
SAME_SHARD_SHARE: Final = 0.25  # transfers whose receiver is on the sender's shard
ROUTER_HOME_RETRY_S: Final = 5.0  # after a failover, try the own region's router again
MESSAGE_BYTES_MAX: Final = 8 << 20
_SINGLE: Final[dict[str, tuple[str, str]]] = {  # kind -> (stub, method)
    "deposit": ("wallet", "Deposit"),
    "withdraw": ("wallet", "Withdraw"),
    "transfer": ("wallet", "Transfer"),
    "send": ("envelopes", "Send"),
    "grab": ("envelopes", "Grab"),
}


@dataclass(slots=True)
class _Link:
    spec: RouterSpec
    wallet: ledger_pb2_grpc.WalletStub
    envelopes: ledger_pb2_grpc.EnvelopesStub
    batch: ledger_pb2_grpc.BatchStub


@dataclass(slots=True)
class _Caller:
    """One concurrent caller: its region's router first, then the others."""

    order: list[int]  # link indexes, own region's first
    rng: random.Random
    current: int = 0  # position in ``order``
    failed_over_at: float = 0.0


@dataclass(slots=True)
class _Envelope:
    envelope_id: str
    remaining: int  # shares left as last answered
    inflight: int = 0  # grabs of it not answered yet
    grabbed: set[str] = field(default_factory=set)  # acknowledged grabbers
    tried: set[str] = field(default_factory=set)  # everyone who tried, whatever the answer

    @property
    def grabbable(self) -> bool:
        return self.remaining - self.inflight > 0


@dataclass(slots=True)
class _Planned:
    op_id: int
    kind: Kind
    request_id: str
    args: dict[str, object]
    operation: ledger_pb2.Operation
    envelope: _Envelope | None = None  # grabs: the envelope, when counted in its inflight


class _Pacer:
    """A token bucket by virtual schedule: ``rate_ops_s`` ops per second over all callers."""

    def __init__(self, rate_ops_s: int) -> None:
        self.rate_ops_s = rate_ops_s
        self._next_s = time.monotonic()

    async def take(self, count: int, stop: asyncio.Event) -> None:
        if self.rate_ops_s <= 0:
            return
        now = time.monotonic()
        self._next_s = max(self._next_s, now - 0.1)  # at most a tenth of a second of burst
        wait_s = self._next_s - now
        self._next_s += count / self.rate_ops_s
        if wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait_s)


class ChaosWorkload:
    """``settings.concurrency`` callers spread round-robin over the topology's routers."""

    def __init__(
        self,
        topology: Topology,
        settings: Workload,
        history: HistoryWriter,
        *,
        seed: int,
        clock: Callable[[], float],
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if not topology.routers:
            raise ValueError("the chaos workload goes through routers: the topology has none")
        for name, high in (("users", USERS_MAX), ("concurrency", CALLERS_MAX),
                           ("batch", BATCH_MAX)):  # fmt: skip
            if not 1 <= getattr(settings, name) <= high:
                raise ValueError(f"{name} {getattr(settings, name)} is outside 1..{high}")
        limits = topology.limits
        if not 1 <= settings.initial_fen <= limits.amount_max_fen:
            raise ValueError(
                f"initial_fen {settings.initial_fen} is outside 1.."
                f"{limits.amount_max_fen} (the topology's amount_max_fen)"
            )
        self.topology = topology
        self.settings = settings
        self.history = history
        self.seed = seed
        self.clock = clock
        self.users = [f"c{seed}-u{n}" for n in range(max(2, settings.users))]  # 2: a transfer
        self._by_shard: dict[int, list[str]] = {}
        self._shard_of: dict[str, int] = {}
        for user in self.users:
            shard = shard_for_user(user, topology.shard_count)
            self._shard_of[user] = shard
            self._by_shard.setdefault(shard, []).append(user)
        self._amount_max_fen = max(1, min(settings.amount_max_fen, limits.amount_max_fen))
        self._count_max = max(1, min(settings.envelope_count_max, limits.envelope_shares_max))
        self._total_max_fen = max(
            1, min(settings.envelope_total_max_fen, limits.envelope_total_max_fen)
        )
        self._share_average_max_fen = limits.envelope_share_average_max_fen
        weights = [max(0, int(getattr(settings, kind))) for kind in KINDS]
        if sum(weights) <= 0:
            raise ValueError("every operation weight of the workload is 0")
        self._kinds = [k for k, w in zip(KINDS, weights, strict=True) if w > 0]
        self._weights = [w for w in weights if w > 0]
        self._timeout_s = max(0.001, settings.call_timeout_ms / 1000.0)
        if credentials is None and topology.tls:
            found = client_credentials(topology)
            credentials = found.ledger.channel_credentials() if found is not None else None
        options = channel_options(MESSAGE_BYTES_MAX)
        self._channels = [open_channel(r.address, credentials, options) for r in topology.routers]
        self._links = [
            _Link(
                spec,
                ledger_pb2_grpc.WalletStub(ch),
                ledger_pb2_grpc.EnvelopesStub(ch),
                ledger_pb2_grpc.BatchStub(ch),
            )
            for spec, ch in zip(topology.routers, self._channels, strict=True)
        ]
        self._metadata = ((CLUSTER_ID_METADATA_KEY, cluster_id_of(topology)),)
        self._callers = [
            self._caller(i, random.Random(f"{seed}-caller-{i}"))
            for i in range(settings.concurrency)
        ]
        self._rng = random.Random(f"{seed}-workload")
        self._pacer = _Pacer(settings.rate_ops_s)
        self._next_op_id = 0
        self._envelopes: list[_Envelope] = []
        self.counts: dict[str, int] = {"ok": 0, "fail": 0, "info": 0}

    def _caller(self, index: int, rng: random.Random) -> _Caller:
        count = len(self._links)
        home = index % count
        return _Caller([home, *(i for i in range(count) if i != home)], rng)

    # -- the phases ------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Every user's opening deposit, the same request id until it is acknowledged."""
        deadline = time.monotonic() + PREPARE_TIMEOUT_S
        pending = [self._plan_deposit(user, self.settings.initial_fen) for user in self.users]
        invoked = {p.op_id: self.clock() for p in pending}
        last: dict[int, Answer] = {}
        maybe: dict[int, Answer] = {}
        backoffs = 0
        gate = asyncio.Semaphore(PREPARE_CALLS_MAX)

        async def one(index: int, chunk: list[_Planned]) -> list[tuple[_Planned, Answer, str]]:
            async with gate:
                caller = self._caller(index, self._rng)
                return await self._execute(caller, chunk, max(PREPARE_CALL_S_MIN, self._timeout_s))

        refused: list[tuple[_Planned, Answer]] = []
        while pending and not refused and time.monotonic() < deadline:
            chunks = [pending[i : i + PREPARE_BATCH] for i in range(0, len(pending), PREPARE_BATCH)]
            answered = await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks)))
            pending = []
            for planned, answer, region in (item for chunk in answered for item in chunk):
                if answer.status == "info":
                    maybe[planned.op_id] = answer
                final = answer.status == "fail" and answer.reason not in ATTEMPT_LOCAL
                if answer.status == "ok" or final:
                    self._record(planned, region, invoked[planned.op_id], answer)
                    if final:  # retrying the same id would get the same refusal
                        refused.append((planned, answer))
                    continue
                last[planned.op_id] = answer
                pending.append(planned)
            if pending and not refused:
                await asyncio.sleep(min(BACKOFF_S_MAX, BACKOFF_S_MIN * 2**backoffs))
                backoffs += 1
        for planned in pending:  # given up on: the history says what they were last told
            answer = maybe.get(planned.op_id, last[planned.op_id])
            self._record(planned, self.topology.routers[0].region, invoked[planned.op_id], answer)
        if refused:
            planned, answer = refused[0]
            raise RuntimeError(
                f"{len(refused)} opening deposits refused (first: {planned.request_id} for "
                f"{planned.args['user']}: {answer.reason}: {answer.message})"
            )
        if pending:
            first = last[pending[0].op_id]
            raise TimeoutError(
                f"{len(pending)} of {len(self.users)} opening deposits not acknowledged within "
                f"{PREPARE_TIMEOUT_S:g} s (first: {pending[0].request_id} for "
                f"{pending[0].args['user']}: {first.code} {first.reason}: {first.message})"
            )

    async def run(self, until_s: float, stop: asyncio.Event | None = None) -> None:
        """Every caller issues ops until ``clock() >= until_s`` or ``stop``; calls in flight
        then finish (each has its deadline) and are recorded."""
        stop = stop or asyncio.Event()
        tasks = [asyncio.create_task(self._loop(c, until_s, stop)) for c in self._callers]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()

    async def _loop(self, caller: _Caller, until_s: float, stop: asyncio.Event) -> None:
        size = self.settings.batch
        while self.clock() < until_s and not stop.is_set():
            await self._pacer.take(size, stop)
            if self.clock() >= until_s or stop.is_set():
                break
            planned = [self._plan(caller.rng) for _ in range(size)]
            invoke_s = self.clock()
            if size == 1:
                answered = [await self._single(caller, planned[0])]
            else:
                answered = await self._execute(caller, planned)
            for item, answer, region in answered:
                self._learn(item, answer)
                self._record(item, region, invoke_s, answer)

    # -- calls -----------------------------------------------------------------------------

    async def _call(
        self,
        caller: _Caller,
        invoke: Callable[[_Link, float], Awaitable[ProtoMessage]],
        timeout_s: float,
    ) -> tuple[ProtoMessage | None, Answer | None, Answer | None, str]:
        """``(response, failure, maybe, region)``: the caller's router; another region's when
        it is gone (a bare UNAVAILABLE: refused or dropped; a deadline is no reason to
        leave). ``maybe``: an earlier attempt that may have applied the request."""
        if caller.current and time.monotonic() - caller.failed_over_at >= ROUTER_HOME_RETRY_S:
            caller.current = 0
        deadline = time.monotonic() + timeout_s
        failure: Answer | None = None
        maybe: Answer | None = None
        link = self._links[caller.order[caller.current]]
        for attempt in range(len(caller.order)):
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                break
            link = self._links[caller.order[caller.current]]
            try:
                return await invoke(link, remaining_s), None, maybe, link.spec.region
            except grpc.aio.AioRpcError as rpc_error:
                failure, answered = rpc_answer(rpc_error)
                rpc_error_code = rpc_error.code()
            gone = rpc_error_code is grpc.StatusCode.UNAVAILABLE  # no router there, or it died
            if answered or not gone or attempt + 1 == len(caller.order):
                break
            maybe = failure  # the router did not answer: it may have applied it
            caller.current = (caller.current + 1) % len(caller.order)
            caller.failed_over_at = time.monotonic()
        return None, failure, maybe, link.spec.region

    async def _execute(
        self, caller: _Caller, planned: list[_Planned], timeout_s: float | None = None
    ) -> list[tuple[_Planned, Answer, str]]:
        request = ledger_pb2.ExecuteRequest(operations=[p.operation for p in planned])

        def invoke(link: _Link, timeout_s: float) -> Awaitable[ProtoMessage]:
            answer = link.batch.Execute(request, timeout=timeout_s, metadata=self._metadata)
            return answer  # type: ignore[no-any-return]

        response, failure, maybe, region = await self._call(
            caller, invoke, self._timeout_s if timeout_s is None else timeout_s
        )
        results: list[ledger_pb2.OperationResult | None] = [None] * len(planned)
        if isinstance(response, ledger_pb2.ExecuteResponse):
            if len(response.results) == len(planned):
                results = list(response.results)
            else:
                failure = Answer(
                    "info", message=f"{len(response.results)} results to {len(planned)} operations"
                )
        return [
            (p, settle(p.kind, r, failure, maybe), region)
            for p, r in zip(planned, results, strict=True)
        ]

    async def _single(self, caller: _Caller, planned: _Planned) -> tuple[_Planned, Answer, str]:
        stub_name, method_name = _SINGLE[planned.kind]
        request = getattr(planned.operation, planned.kind)

        def invoke(link: _Link, timeout_s: float) -> Awaitable[ProtoMessage]:
            method = getattr(getattr(link, stub_name), method_name)
            answer = method(request, timeout=timeout_s, metadata=self._metadata)
            return answer  # type: ignore[no-any-return]

        response, failure, maybe, region = await self._call(caller, invoke, self._timeout_s)
        result = None
        if response is not None:
            result = ledger_pb2.OperationResult()
            getattr(result, planned.kind).CopyFrom(response)
        return planned, settle(planned.kind, result, failure, maybe), region

    def _record(self, planned: _Planned, region: str, invoke_s: float, answer: Answer) -> None:
        self.counts[answer.status] += 1
        self.history.write(
            Op(
                op_id=planned.op_id,
                kind=planned.kind,
                request_id=planned.request_id,
                region=region,
                args=planned.args,
                invoke_s=invoke_s,
                complete_s=self.clock(),
                status=answer.status,
                code=answer.code,
                reason=answer.reason,
                message=answer.message,
                result=answer.result,
            )
        )

    # -- what to ask -----------------------------------------------------------------------

    def _new_id(self) -> tuple[int, str]:
        self._next_op_id += 1
        return self._next_op_id, f"c{self.seed}-{self._next_op_id}"

    def _plan_deposit(self, user: str, amount_fen: int) -> _Planned:
        op_id, rid = self._new_id()
        request = ledger_pb2.DepositRequest(request_id=rid, user_id=user, amount_fen=amount_fen)
        return _Planned(
            op_id,
            "deposit",
            rid,
            {"user": user, "amount_fen": amount_fen},
            ledger_pb2.Operation(deposit=request),
        )

    def _plan(self, rng: random.Random) -> _Planned:
        kind: Kind = rng.choices(self._kinds, self._weights)[0]  # type: ignore[assignment]
        if kind == "grab":
            grab = self._plan_grab(rng)
            if grab is not None:
                return grab
            kind = "send" if "send" in self._kinds else "transfer"
        user = rng.choice(self.users)
        if kind == "deposit":
            return self._plan_deposit(user, rng.randint(1, self._amount_max_fen))
        op_id, rid = self._new_id()
        if kind == "withdraw":
            amount = rng.randint(1, self._amount_max_fen)
            request = ledger_pb2.WithdrawRequest(request_id=rid, user_id=user, amount_fen=amount)
            return _Planned(
                op_id,
                "withdraw",
                rid,
                {"user": user, "amount_fen": amount},
                ledger_pb2.Operation(withdraw=request),
            )
        if kind == "transfer":
            receiver = self._receiver(user, rng)
            amount = rng.randint(1, self._amount_max_fen)
            transfer = ledger_pb2.TransferRequest(
                request_id=rid, from_user_id=user, to_user_id=receiver, amount_fen=amount
            )
            return _Planned(
                op_id,
                "transfer",
                rid,
                {"from": user, "to": receiver, "amount_fen": amount},
                ledger_pb2.Operation(transfer=transfer),
            )
        count, total, lucky = self._envelope_shape(rng)
        send = ledger_pb2.SendRequest(
            request_id=rid,
            sender_user_id=user,
            total_fen=total,
            count=count,
            kind=ledger_pb2.ENVELOPE_KIND_LUCKY if lucky else ledger_pb2.ENVELOPE_KIND_FIXED,
        )
        args: dict[str, object] = {
            "sender": user,
            "total_fen": total,
            "count": count,
            "envelope_kind": "lucky" if lucky else "fixed",
        }
        return _Planned(op_id, "send", rid, args, ledger_pb2.Operation(send=send))

    def _receiver(self, sender: str, rng: random.Random) -> str:
        same = self._by_shard[self._shard_of[sender]]
        pool = same if len(same) > 1 and rng.random() < SAME_SHARD_SHARE else self.users
        while True:
            receiver = rng.choice(pool)
            if receiver != sender:
                return receiver

    def _envelope_shape(self, rng: random.Random) -> tuple[int, int, bool]:
        """(count, total_fen, lucky) valid for the limits (fixed totals divide by count)."""
        count = rng.randint(1, self._count_max)
        total_max = min(self._total_max_fen, count * self._share_average_max_fen)
        count = min(count, total_max)
        if rng.random() < 0.5:
            return count, rng.randint(count, total_max), True
        return count, count * rng.randint(1, total_max // count), False

    def _plan_grab(self, rng: random.Random) -> _Planned | None:
        envelope = self._grabbable(rng)
        if envelope is None:
            return None
        user = ""
        counted = True
        if envelope.grabbed and rng.random() < DOUBLE_GRAB_SHARE:
            user, counted = rng.choice(sorted(envelope.grabbed)), False  # a mistake, on purpose
        else:
            for _ in range(GRAB_PICKS_MAX):
                candidate = rng.choice(self.users)
                if candidate not in envelope.tried:
                    user = candidate
                    break
        if not user:
            return None
        envelope.tried.add(user)
        envelope.inflight += counted
        op_id, rid = self._new_id()
        grab = ledger_pb2.GrabRequest(
            request_id=rid, envelope_id=envelope.envelope_id, user_id=user
        )
        return _Planned(
            op_id,
            "grab",
            rid,
            {"envelope_id": envelope.envelope_id, "user": user},
            ledger_pb2.Operation(grab=grab),
            envelope if counted else None,
        )

    def _grabbable(self, rng: random.Random) -> _Envelope | None:
        """A remembered envelope that may have shares for another grab; spent ones dropped."""
        for _ in range(GRAB_PICKS_MAX):
            if not self._envelopes:
                return None
            index = rng.randrange(len(self._envelopes))
            envelope = self._envelopes[index]
            if envelope.grabbable:
                return envelope
            if envelope.remaining <= 0:  # spent: swap with the last and drop
                self._envelopes[index] = self._envelopes[-1]
                self._envelopes.pop()
        return None

    def _learn(self, planned: _Planned, answer: Answer) -> None:
        """Remember acknowledged envelopes; follow their shares through grab answers."""
        if planned.kind == "send" and answer.status == "ok":
            count = int(planned.args["count"])  # type: ignore[call-overload]
            sent = _Envelope(str(answer.result["envelope_id"]), count)
            if len(self._envelopes) >= ENVELOPES_OPEN_MAX:
                self._envelopes[self._rng.randrange(len(self._envelopes))] = sent
            else:
                self._envelopes.append(sent)
            return
        envelope = planned.envelope
        if planned.kind != "grab" or envelope is None:
            return
        envelope.inflight -= 1
        if answer.status == "ok":
            envelope.grabbed.add(str(planned.args["user"]))
            left = answer.result.get("remaining_count", 0)
            envelope.remaining = min(envelope.remaining, int(left))  # type: ignore[call-overload]
        elif answer.reason in ("ENVELOPE_EMPTY", "ENVELOPE_EXPIRED", "NOT_FOUND"):
            envelope.remaining = 0
