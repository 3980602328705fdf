"""The gRPC server's limits, in one place, and the interceptor that answers bad bytes.

Rules of this module: every bound the node's gRPC server enforces on a connection is set
by :func:`server_options` (used by ``NodeServer``), with the reason for its value; the
undecodable-request answer is :class:`DecodeErrorInterceptor`. Why explicit values: the
defaults let a connection that completed the HTTP/2 handshake idle for ever (20,000 of
them took every file descriptor), and leave keepalive pings unbounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

MESSAGE_BYTES_MAX_DEFAULT: Final = 8 << 20


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Per-connection bounds of the node's gRPC server."""

    message_bytes_max: int = MESSAGE_BYTES_MAX_DEFAULT
    """Largest message received or sent (a peer batch is kept below it by its sender)."""
    concurrent_streams_max: int = 1_000
    """Streams (RPCs) at once on one HTTP/2 connection: bounds one client's queued work."""
    keepalive_time_ms: int = 30_000
    """The server pings a connection this often, to find peers that vanished."""
    keepalive_timeout_ms: int = 10_000
    """A ping unanswered this long closes the connection."""
    ping_interval_ms_min: int = 10_000
    """Pings from a client closer together than this are abuse (GOAWAY after a few)."""
    pings_without_data_max: int = 2
    """Pings the server sends without data in between before it waits for data."""
    connection_idle_ms_max: int = 60_000
    """A connection with no RPC for this long is closed (a handshaken, idle connection)."""
    connection_age_ms_max: int = 3_600_000
    """Every connection is closed after an hour (clients reconnect and rebalance)."""
    connection_age_grace_ms: int = 60_000
    """Time an old connection's in-flight RPCs get before it is closed (peer streams are
    long-lived: they reopen on a new connection within their sender's back-off)."""


def server_options(limits: ServerLimits | None = None) -> list[tuple[str, int]]:
    """The ``options`` of ``grpc.aio.server`` for a node."""
    chosen = limits or ServerLimits()
    return [
        ("grpc.max_receive_message_length", chosen.message_bytes_max),
        ("grpc.max_send_message_length", chosen.message_bytes_max),
        ("grpc.max_concurrent_streams", chosen.concurrent_streams_max),
        ("grpc.keepalive_time_ms", chosen.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", chosen.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", chosen.pings_without_data_max),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", chosen.ping_interval_ms_min),
        ("grpc.http2.min_ping_interval_without_data_ms", chosen.ping_interval_ms_min),
        ("grpc.max_connection_idle_ms", chosen.connection_idle_ms_max),
        ("grpc.max_connection_age_ms", chosen.connection_age_ms_max),
        ("grpc.max_connection_age_grace_ms", chosen.connection_age_grace_ms),
    ]


Handler = Callable[..., Any]
MethodHandler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class DecodeErrorInterceptor(grpc.aio.ServerInterceptor):
    """Answers request bytes that do not decode with INVALID_ARGUMENT, not UNKNOWN.

    gRPC decodes a request with the method's deserializer before the handler runs, and a
    ``DecodeError`` there becomes ``UNKNOWN: Unexpected DecodeError``. This interceptor
    takes the deserializer out of the method handler (the handler then receives the raw
    bytes) and decodes inside a wrapper that aborts with INVALID_ARGUMENT. Unary calls and
    bidirectional streams (Peer.Stream) are wrapped; server-streaming ones (health Watch)
    decode one small message and keep gRPC's own answer.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[MethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> MethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer
        method = handler_call_details.method
        # grpcio's method handlers are namedtuples: _replace swaps the deserializer out.
        replace: Callable[..., MethodHandler] = handler._replace  # type: ignore[attr-defined]
        if handler.unary_unary is not None and not handler.request_streaming:
            unary = _unary(handler.unary_unary, decode, method)
            return replace(request_deserializer=None, unary_unary=unary)
        if handler.stream_stream is not None:
            streaming = _streaming(handler.stream_stream, decode, method)
            return replace(request_deserializer=None, stream_stream=streaming)
        return handler


async def _decoded(
    decode: Callable[[bytes], Any],
    raw: bytes,
    method: str,
    context: grpc.aio.ServicerContext[Any, Any],
) -> Any:
    try:
        return decode(raw)
    except (DecodeError, ValueError, TypeError) as error:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"{method}: the request does not decode: {error}"
        )


def _unary(inner: Handler, decode: Callable[[bytes], Any], method: str) -> Handler:
    async def unary(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request = await _decoded(decode, raw, method, context)
        return await inner(request, context)

    return unary


def _streaming(inner: Handler, decode: Callable[[bytes], Any], method: str) -> Handler:
    async def streaming(
        raw_requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        async def requests() -> AsyncIterator[Any]:
            async for raw in raw_requests:
                yield await _decoded(decode, raw, method, context)

        async for response in inner(requests(), context):
            yield response

    return streaming
