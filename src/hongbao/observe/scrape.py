"""Fetching and parsing one process's Prometheus ``/metrics``.

Rules of this module: a scrape never raises for an operating problem. A process with no
metrics port, one that does not answer within the deadline, or one that answers with
something unparsable comes back as a :class:`Scrape` that says so (``ok`` False and a
reason), so the views show "no metrics" next to it instead of failing. Parsing is
``prometheus_client``'s own text parser; a body is read up to ``BODY_BYTES_MAX``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT_S = 1.0
BODY_BYTES_MAX = 4 << 20  # a node with a few hundred shards stays far below this

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    name: str  # the sample's own name: ``..._total``, ``..._bucket``, ``..._sum``
    labels: Labels
    value: float

    def label(self, key: str) -> str:
        return dict(self.labels).get(key, "")


@dataclass(frozen=True, slots=True)
class Scrape:
    """One /metrics answer (or why there is none)."""

    address: str | None  # host:metrics_port; None: the topology names no metrics port
    ok: bool
    error: str = ""
    samples: tuple[Sample, ...] = field(default_factory=tuple)

    def named(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(s.value for s in self.samples if s.name == name and wanted <= set(s.labels))


def parse_metrics(text: str) -> tuple[Sample, ...]:
    """Every sample of a Prometheus text exposition (ValueError when it is not one)."""
    samples: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((str(k), str(v)) for k, v in sample.labels.items()))
            samples.append(Sample(sample.name, labels, float(sample.value)))
    return tuple(samples)


class Scraper:
    """One aiohttp session for every /metrics fetch of a view (``async with``)."""

    def __init__(self, timeout_s: float = SCRAPE_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Scraper:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def scrape(self, address: str | None) -> Scrape:
        if address is None:
            return Scrape(None, ok=False, error="no metrics port in the topology")
        try:
            async with self._client().get(f"http://{address}/metrics") as response:
                if response.status != 200:
                    return Scrape(address, ok=False, error=f"HTTP {response.status}")
                body = await response.content.read(BODY_BYTES_MAX)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return Scrape(address, ok=False, error=f"unreachable: {type(error).__name__}")
        try:
            samples = parse_metrics(body.decode("utf-8", errors="replace"))
        except ValueError as error:
            return Scrape(address, ok=False, error=f"unparsable: {error}")
        return Scrape(address, ok=True, samples=samples)

    async def scrape_all(self, addresses: list[str | None]) -> list[Scrape]:
        return list(await asyncio.gather(*(self.scrape(a) for a in addresses)))
