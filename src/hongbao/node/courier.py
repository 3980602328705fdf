"""The courier: moves cross-shard credits from source outboxes to destination shards.

Rules of this module (DESIGN section 4): only the leader of a source shard runs its
courier; it reads the outbox, hands the entries *in order* to the destination shard's
leader (itself, or another node through ``Peer.Deliver``), learns how far the destination
has applied, and then proposes an ``Acknowledge`` on the source so those entries are
dropped. Any step may fail or be repeated: the destination applies sequence n only after
n-1 and ignores duplicates, so a new leader simply starts again from its outbox.

The leaders of shards also propose ``ExpireEnvelopes`` here, with their clock, so that
unclaimed money returns to senders after the envelope's TTL.

Idle cost: an outbox changes only when its shard applies an entry (or installs a
snapshot), so a shard whose outbox was found empty at applied index i is not read again
until its applied index moves past i. A sweep every ``sweep_interval_ms`` reads every led
shard anyway, as a backstop. An idle node no longer reads every led shard's outbox every
round (at 96 shards that was thousands of LMDB reads a second, for nothing), and a round
in which no group of the node applied anything since the last one stops at once, sweeps
aside (an installed snapshot is found by the next sweep).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc

from hongbao.ledger import outbox
from hongbao.ledger.commands import (
    Acknowledge,
    Deliver,
    ExpireEnvelopes,
    decode_command,
    encode_command,
)
from hongbao.ledger.results import Result
from hongbao.ledger.store import LedgerStore, Table
from hongbao.net.channels import open_channel
from hongbao.node.errors import ErrorReason, HongbaoError, error_from_rpc_error, make_error
from hongbao.node.runtime import NodeRuntime
from hongbao.node.transport import TransportLimits
from hongbao.proto.gen.hongbao.v1 import peer_pb2, peer_pb2_grpc

log = logging.getLogger(__name__)

FAILURE_LOG_EVERY = 100  # a shard that fails every round (20 ms) logs once per 2 s


@dataclass(frozen=True, slots=True)
class CourierLimits:
    interval_ms: int = 20
    expire_interval_ms: int = 1000
    sweep_interval_ms: int = 1000  # every led shard's outbox read, changed or not
    deliver_timeout_ms: int = 5000


class Courier:
    def __init__(
        self,
        runtime: NodeRuntime,
        transport_limits: TransportLimits,
        limits: CourierLimits | None = None,
    ) -> None:
        self.runtime = runtime
        self.limits = limits or CourierLimits()
        self.transport_limits = transport_limits
        self._busy: set[tuple[int, int]] = set()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_expire_ms: dict[int, int] = {}
        self._empty_at: dict[int, int] = {}  # shard -> applied index its outbox was empty at
        self._last_sweep_ms = 0
        self._applied_total_seen = -1  # the runtime's entries_applied at the last round
        self.outbox_reads = 0  # rounds that read an outbox (the idle cost: few)
        self.delivered_entries = 0
        self.failed_rounds = 0
        self.cluster_id = ""
        self.credentials: grpc.ChannelCredentials | None = None  # the node's, with TLS

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.limits.interval_ms / 1000)
                self.round()
        finally:
            for channel in self._channels.values():
                await channel.close()

    def round(self) -> None:
        """Serve every led shard whose outbox may hold work (module docstring)."""
        now_ms = self.runtime.clock_ms()
        sweep = now_ms - self._last_sweep_ms >= self.limits.sweep_interval_ms
        if sweep:
            self._last_sweep_ms = now_ms
        applied_total = self.runtime.stats["entries_applied"]
        if not sweep and applied_total == self._applied_total_seen:
            return  # no group applied anything: no outbox changed (idle cost)
        self._applied_total_seen = applied_total
        for shard_id, replica in sorted(self.runtime.replicas.items()):
            if not replica.is_leader:
                self._empty_at.pop(shard_id, None)
                continue
            applied = replica.core.applied_index
            unchanged = self._empty_at.get(shard_id) == applied
            self._serve(shard_id, applied, deliver=sweep or not unchanged)

    def _serve(self, shard_id: int, applied: int, *, deliver: bool) -> None:
        """One shard's round: a failure is logged and stops only this shard's round."""
        try:
            if deliver:
                self._start_deliveries(shard_id, applied)
            self._maybe_expire(shard_id)
        except Exception:
            self.failed_rounds += 1
            if self.failed_rounds % FAILURE_LOG_EVERY == 1:
                log.exception(
                    "courier of shard %d failed (%d so far)", shard_id, self.failed_rounds
                )

    def _start_deliveries(self, shard_id: int, applied: int) -> None:
        self.outbox_reads += 1
        destinations = self.runtime.query(shard_id, outbox.outbox_destinations)
        if destinations:
            self._empty_at.pop(shard_id, None)
        else:  # nothing until the shard applies something (the event loop is ours till then)
            self._empty_at[shard_id] = applied
        for destination in destinations:
            key = (shard_id, destination)
            if key in self._busy:
                continue
            self._busy.add(key)
            task = asyncio.create_task(self._deliver(shard_id, destination))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, source: int, destination: int) -> None:
        try:
            # The same bound the destination's Peer.Deliver enforces: a bigger batch would
            # be refused whole, on every round, and the outbox would never drain.
            limit = self.runtime.topology.limits.outbox_batch_max
            entries = self.runtime.query(
                source, lambda store: outbox.pending_outbox(store, destination, limit)
            )
            if not entries:
                return
            commands = [outbox.deliver_command(entry) for entry in entries]
            applied_seq = await asyncio.wait_for(
                self._hand_over(source, destination, commands),
                2 * self.limits.deliver_timeout_ms / 1000,
            )
            if applied_seq >= entries[0].seq:
                ack = Acknowledge(destination_shard=destination, up_to_seq=applied_seq)
                timeout_s = self.limits.deliver_timeout_ms / 1000
                await asyncio.wait_for(self.runtime.submit(source, ack), timeout_s)
                self.delivered_entries += sum(1 for e in entries if e.seq <= applied_seq)
        except (HongbaoError, TimeoutError) as error:
            # Nothing is lost: the outbox keeps the entries until they are acknowledged.
            log.debug("courier %d->%d: %s", source, destination, error)
        except Exception:
            log.exception("courier %d->%d failed", source, destination)
        finally:
            self._busy.discard((source, destination))

    async def _hand_over(self, source: int, destination: int, commands: list[Deliver]) -> int:
        if self.runtime.replicas.get(destination) is not None and (
            self.runtime.replicas[destination].is_leader
        ):
            return await self.apply_deliveries(source, destination, commands)
        leader = self.runtime.leader_of(destination) or self.runtime.topology.home_leader_of(
            destination
        )
        if leader == self.runtime.node_id:
            raise make_error(ErrorReason.NOT_LEADER, "no leader for the destination yet")
        address = self.runtime.topology.dial_address(leader)
        stub = peer_pb2_grpc.PeerStub(self._channel(address))
        request = peer_pb2.DeliverRequest(
            cluster_id=self.cluster_id,
            from_node_id=self.runtime.node_id,
            source_shard=source,
            destination_shard=destination,
            commands=[encode_command(command) for command in commands],
        )
        try:
            response = await stub.Deliver(request, timeout=self.limits.deliver_timeout_ms / 1000)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc_error(error) from error
        return int(response.applied_seq)

    async def apply_deliveries(self, source: int, destination: int, commands: list[Deliver]) -> int:
        """On the destination's leader: apply in order, then report how far it got."""
        futures = [self.runtime.submit(destination, command) for command in commands]
        results: list[Result] = await asyncio.gather(*futures)
        del results  # duplicates and gaps are answered by the position below
        position = self.runtime.query(
            destination, lambda store: outbox.inbox_position(store, source)
        )
        return position.seq

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = open_channel(address, self.credentials, self.transport_limits.grpc_options())
            self._channels[address] = channel
        return channel

    def _maybe_expire(self, shard_id: int) -> None:
        now_ms = self.runtime.clock_ms()  # the clock the runtime stamps batches with
        if now_ms - self._last_expire_ms.get(shard_id, 0) < self.limits.expire_interval_ms:
            return
        self._last_expire_ms[shard_id] = now_ms
        if not self.runtime.query(shard_id, lambda store: _has_due_envelopes(store, now_ms)):
            return
        limit = self.runtime.topology.limits.expire_batch_max
        command = ExpireEnvelopes(now_ms=now_ms, limit=limit)
        try:
            future = self.runtime.submit(shard_id, command)
        except HongbaoError:
            return
        future.add_done_callback(_ignore_result)


def _ignore_result(future: asyncio.Future[Result]) -> None:
    if not future.cancelled():
        future.exception()  # retrieve it so asyncio does not warn; expiry retries anyway


def _has_due_envelopes(store: LedgerStore, now_ms: int) -> bool:
    """The expiry table is ordered by expiry time: its first row tells (one bounded read)."""
    rows = store.scan(Table.EXPIRY, limit=1)
    return bool(rows) and int.from_bytes(rows[0][0][:8], "big") <= now_ms


def decode_deliveries(request: peer_pb2.DeliverRequest) -> list[Deliver]:
    """The commands of a DeliverRequest; INVALID_REQUEST unless all are matching Delivers."""
    commands: list[Deliver] = []
    for data in request.commands:
        try:
            command = decode_command(bytes(data))
        except ValueError as error:
            raise make_error(ErrorReason.INVALID_REQUEST, f"bad command: {error}") from error
        if not isinstance(command, Deliver) or command.source_shard != request.source_shard:
            raise make_error(ErrorReason.INVALID_REQUEST, "only Deliver commands of the source")
        commands.append(command)
    return commands
