"""Every bound of the Toxiproxy-compatible server, in one place, with the reason for each.

The reference server (Shopify/toxiproxy) bounds almost nothing; this one must not let a
client or a peer exhaust the memory of the machine that also runs the cluster under test.
"""

from __future__ import annotations

# A chunk is one read from a socket: the reference reads at most 32 KiB at a time.
CHUNK_BYTES_MAX = 32 * 1024
# The asyncio StreamReader buffer per socket: two chunks, so a read never waits on a refill.
READ_BUFFER_BYTES_MAX = 2 * CHUNK_BYTES_MAX
# Chunks a latency stage may hold waiting for their time (the reference's buffer size).
LATENCY_CHUNKS_MAX = 1024
# Chunks between two ordinary stages: one, like the reference's unbuffered Go channels.
STAGE_CHUNKS_MAX = 1
# Open proxied connections per proxy; one more is accepted and closed at once.
CONNECTIONS_PER_PROXY_MAX = 1024
# Toxics per proxy (both streams together); every one is a stage on every open link.
TOXICS_PER_PROXY_MAX = 64
# Proxies per server.
PROXIES_MAX = 4096
# Request bodies larger than this answer 413 before they are read into memory.
REQUEST_BODY_BYTES_MAX = 1024 * 1024
# The reference's handler limit: a request still running after it answers 503.
HANDLER_TIMEOUT_S = 25.0
# Dialling the upstream has no explicit timeout in the reference; a bound keeps a dead
# upstream from pinning a connection slot for the kernel's SYN retry time.
DIAL_TIMEOUT_S = 10.0
# Removing reset_peer waits for its timer (as the reference's DELETE does), this long at
# most: past it the connection is reset at once, so one huge timer cannot block the API.
UNINTERRUPTIBLE_WAIT_S_MAX = 5.0
# Listen backlog of every proxy listener.
LISTEN_BACKLOG = 128

assert READ_BUFFER_BYTES_MAX >= CHUNK_BYTES_MAX, "a read must fit in the stream buffer"
assert STAGE_CHUNKS_MAX >= 1, "a zero-capacity channel would deadlock the single-thread hand-off"
