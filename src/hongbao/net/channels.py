"""The gRPC channel arguments every hongbao client channel uses (SDK, CLI, peer streams).

Why: gRPC's default reconnect back-off starts at 1 s and grows to 120 s. A client that
watched a node die would then ignore it for up to two minutes after it came back, and a
leader that moved home to that node would look unreachable the whole time. Failover back
to a recovered node must take about a second, not minutes, so the back-off is capped.
"""

from __future__ import annotations

from typing import Final

import grpc

RECONNECT_BACKOFF_MS_INITIAL: Final = 100
RECONNECT_BACKOFF_MS_MAX: Final = 1_000


def channel_options(message_bytes_max: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", message_bytes_max),
        ("grpc.max_receive_message_length", message_bytes_max),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS_INITIAL),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS_MAX),
    ]


def open_channel(
    address: str,
    credentials: grpc.ChannelCredentials | None,
    options: list[tuple[str, int]],
) -> grpc.aio.Channel:
    """A channel to ``address``: mutual TLS with ``credentials``, plaintext without.

    Plaintext only when the caller holds no credentials, which happens only when the
    topology says ``tls = false`` (see :mod:`hongbao.security.tls`).
    """
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)
