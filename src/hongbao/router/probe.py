"""Probing the nodes the router counts as ``down``, so that one that is back is used again.

Why: a ``down`` node is tried last, so once its replicas have other leaders nothing would
send it a request and its health could never recover; a returning region would stay
"down" in this router until some NOT_LEADER hint named it. Every ``suspect_after_ms``
the prober sends each down or suspect node a gRPC health check (bounded by
``PROBE_TIMEOUT_MS_MAX``); any answer marks it as answering again.
"""

from __future__ import annotations

import asyncio
from typing import Final

import grpc

from hongbao.client.routing import NodeHealth, Routing
from hongbao.router.links import NodeLinks

HEALTH_CHECK_PATH: Final = "/grpc.health.v1.Health/Check"
PROBE_TIMEOUT_MS_MAX: Final = 1_000


class Prober:
    def __init__(self, routing: Routing, links: NodeLinks) -> None:
        self.routing = routing
        self.links = links
        settings = routing.settings
        self.interval_s = settings.suspect_after_ms / 1000.0
        self.timeout_s = min(PROBE_TIMEOUT_MS_MAX, settings.suspect_after_ms) / 1000.0
        self.probes = 0

    async def probe_once(self) -> list[int]:
        """Probe every node not ``up``; the ones that answered."""
        health = self.routing.health
        ailing = [n for n, h in health.snapshot().items() if h is not NodeHealth.UP]
        answered = await asyncio.gather(*(self._probe(n) for n in ailing))
        return [n for n, ok in zip(ailing, answered, strict=True) if ok]

    async def _probe(self, node_id: int) -> bool:
        self.probes += 1
        try:
            await self.links.forward(node_id, HEALTH_CHECK_PATH, b"", self.timeout_s)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return False
            # Any other status (even NOT_FOUND or PERMISSION_DENIED) came from the node.
        self.routing.health.answered(node_id)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.probe_once()
