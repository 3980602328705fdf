"""The chaos network: one Toxiproxy proxy per link, so each link can be broken alone.

A link is one process dialing one node: ``n1-n2`` is node 1's connection to node 2 and
``r1-n2`` router 1's. Each gets its own proxy (listening on a free 127.0.0.1 port, its
upstream the node's real address); every dialer is told, by its ``--dial-map`` file,
to connect to its own proxies. A partition, a one-way cut or a latency matrix is then a
set of toxics on chosen links and streams: ``upstream`` carries what the dialer sends,
``downstream`` what the node answers.

Rules of this module: it only talks to the Toxiproxy HTTP API, through the
``toxiproxy-python`` client's ``APIConsumer`` (so its error mapping: ``ProxyExists``,
``NotFound``, ``InvalidToxic``), every call with a timeout (the client's high-level
calls have none). That client keeps the server's address in class attributes, shared
by the whole process; every call here sets it under one lock, so two ChaosNets (or
threads) on different servers never cross. Blocking: asyncio callers use
``asyncio.to_thread``. Every node pair is linked (not only replicas of a shard): the
courier delivers cross-shard credits to whichever node leads the destination, and every
node reads the cluster state from the meta nodes, so a pair without a proxy would be a
hole in a partition.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TypeVar

import requests
from toxiproxy.api import APIConsumer  # type: ignore[import-untyped]
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists  # type: ignore[import-untyped]

from hongbao.config.topology import Topology
from hongbao.ops.local import free_ports, topology_ports

API_TIMEOUT_S: Final = 30.0  # above the server's own 25 s handler limit
CREATE_ATTEMPTS: Final = 3  # a listen port taken meanwhile: another free port
LINKS_MAX: Final = 4096  # proxies of one net (each is a listening socket)
STREAMS: Final = ("upstream", "downstream")
COUNTERS_EXTENSION: Final = "counters"

_API_LOCK = threading.Lock()  # guards APIConsumer's process-wide host and port
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Link:
    name: str  # "n1-n2": node 1 dials node 2; "r1-n2": router 1 dials node 2
    source: str  # "n1" or "r1"
    source_region: str
    node_id: int  # the node dialed
    target_region: str
    listen: str  # "127.0.0.1:PORT": where the dialer connects
    upstream: str  # the node's real host:port

    @property
    def source_node(self) -> int | None:
        """The dialing node's id (None when a router dials)."""
        return int(self.source[1:]) if self.source.startswith("n") else None


class ChaosNetError(RuntimeError):
    """A Toxiproxy call failed; the message names the call, the proxy and the answer.
    ``missing``: the server has no such proxy or toxic (HTTP 404)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def plan_links(topology: Topology, ports: Iterable[int]) -> tuple[Link, ...]:
    """Every node to every other node, then every router to every node, in id order;
    ``ports`` gives each its listen port, in that order."""
    chosen = iter(ports)
    links: list[Link] = []
    nodes = sorted(topology.nodes, key=lambda n: int(n.node_id))
    dialers: list[tuple[str, str, int | None]] = [
        (f"n{int(n.node_id)}", n.region, int(n.node_id)) for n in nodes
    ]
    routers = sorted(topology.routers, key=lambda r: r.router_id)
    dialers += [(f"r{r.router_id}", r.region, None) for r in routers]
    for source, region, own in dialers:
        for target in nodes:
            if int(target.node_id) == own:
                continue
            links.append(Link(
                name=f"{source}-n{int(target.node_id)}", source=source, source_region=region,
                node_id=int(target.node_id), target_region=target.region,
                listen=f"127.0.0.1:{next(chosen)}", upstream=target.address,
            ))  # fmt: skip
    return tuple(links)


def link_count(topology: Topology) -> int:
    nodes = len(topology.nodes)
    return nodes * (nodes - 1) + len(topology.routers) * nodes


class ChaosNet:
    """The proxies of one cluster on one Toxiproxy server (``api_host:api_port``)."""

    def __init__(self, topology: Topology, api_host: str, api_port: int) -> None:
        count = link_count(topology)
        if count > LINKS_MAX:
            raise ChaosNetError(f"{count} links is over the limit of {LINKS_MAX}")
        self.topology = topology
        self.api_host = api_host
        self.api_port = api_port
        self.links: tuple[Link, ...] = plan_links(
            topology, free_ports(count, exclude=topology_ports(topology))
        )
        self._created: set[str] = set()
        self._extensions: tuple[str, ...] | None = None

    # -- the API, one call at a time -------------------------------------------------------

    @contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Point the client at this net's server and turn its failures into ChaosNetError."""
        with _API_LOCK:
            saved = (APIConsumer.host, APIConsumer.port)
            APIConsumer.host, APIConsumer.port = self.api_host, self.api_port
            try:
                yield
            except (ProxyExists, NotFound, InvalidToxic) as error:
                kind = type(error).__name__
                missing = isinstance(error, NotFound)
                message = f"toxiproxy {what}: {kind}: {_text(error)}"
                raise ChaosNetError(message, missing=missing) from error
            except requests.RequestException as error:
                raise ChaosNetError(f"toxiproxy {what}: {error}") from error
            finally:
                APIConsumer.host, APIConsumer.port = saved

    def _call(self, what: str, call: Callable[[], T]) -> T:
        with self._api(what):
            return call()

    def _get(self, what: str, url: str) -> Any:
        response = self._call(what, lambda: APIConsumer.get(url, timeout=API_TIMEOUT_S))
        _check(what, response)
        return response.json()

    def _post(self, what: str, url: str, body: Mapping[str, Any]) -> None:
        payload = dict(body)
        response = self._call(
            what, lambda: APIConsumer.post(url, json=payload, timeout=API_TIMEOUT_S)
        )
        _check(what, response)

    def _delete(self, what: str, url: str, *, absent_ok: bool) -> None:
        try:
            response = self._call(what, lambda: APIConsumer.delete(url, timeout=API_TIMEOUT_S))
        except ChaosNetError as error:
            if absent_ok and error.missing:
                return
            raise
        _check(what, response)

    # -- proxies -----------------------------------------------------------------------------

    def create(self) -> None:
        """Create every link's proxy, enabled. A listen port taken since it was chosen is
        replaced by another free one (so ``links`` may change: write the dial maps after)."""
        links = list(self.links)
        for index, link in enumerate(links):
            if link.name in self._created:
                continue
            for attempt in range(CREATE_ATTEMPTS):
                body = {"name": link.name, "listen": link.listen, "upstream": link.upstream,
                        "enabled": True}  # fmt: skip
                try:
                    self._post(f"create {link.name}", "/proxies", body)
                    break
                except ChaosNetError as error:
                    if "address already in use" not in str(error) or attempt + 1 == CREATE_ATTEMPTS:
                        raise
                    link = replace(link, listen=f"127.0.0.1:{self._spare_port(links)}")
            links[index] = link
            self._created.add(link.name)
        self.links = tuple(links)

    def _spare_port(self, links: list[Link]) -> int:
        """A free port that is neither a process's nor another link's."""
        promised = topology_ports(self.topology)
        promised |= {int(link.listen.rsplit(":", 1)[1]) for link in links}
        return free_ports(1, exclude=promised)[0]

    def destroy(self) -> None:
        """Delete every proxy this net created (already gone: fine)."""
        for link in self.links:
            if link.name in self._created:
                self._delete(f"delete {link.name}", f"/proxies/{link.name}", absent_ok=True)
                self._created.discard(link.name)

    def write_dial_maps(self, directory: Path) -> tuple[dict[int, Path], dict[int, Path]]:
        """One ``--dial-map`` file per node and per router: node id -> its proxy's listen."""
        directory.mkdir(parents=True, exist_ok=True)
        by_source: dict[str, dict[str, str]] = {}
        for link in self.links:
            by_source.setdefault(link.source, {})[str(link.node_id)] = link.listen
        nodes: dict[int, Path] = {}
        routers: dict[int, Path] = {}
        for source, mapping in by_source.items():
            path = directory / f"dial-{source}.json"
            path.write_text(json.dumps(mapping, indent=1, sort_keys=True) + "\n")
            (nodes if source.startswith("n") else routers)[int(source[1:])] = path
        for node in self.topology.nodes:  # a lone node dials nobody: an empty map
            if int(node.node_id) not in nodes:
                path = directory / f"dial-n{int(node.node_id)}.json"
                path.write_text("{}\n")
                nodes[int(node.node_id)] = path
        return nodes, routers

    # -- choosing links --------------------------------------------------------------------

    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(f"no link {name!r}")

    def links_between(self, sources: Iterable[str], targets: Iterable[str]) -> list[Link]:
        """Links dialed from a region of ``sources`` to a node in a region of ``targets``."""
        from_regions, to_regions = set(sources), set(targets)
        return [
            link
            for link in self.links
            if link.source_region in from_regions and link.target_region in to_regions
        ]

    def links_touching_nodes(self, node_ids: Iterable[int]) -> list[Link]:
        """Links dialed by or to those nodes (routers' links to them included)."""
        chosen = set(node_ids)
        return [link for link in self.links if link.node_id in chosen or link.source_node in chosen]

    # -- toxics ------------------------------------------------------------------------------

    def add_toxic(
        self,
        link: Link,
        *,
        name: str,
        type: str,
        stream: str,
        attributes: dict[str, int | float],
        toxicity: float = 1.0,
    ) -> None:
        """Add a toxic to ``link``'s proxy; one of the same name already there is replaced."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be upstream or downstream, not {stream!r}")
        body = {
            "name": name, "type": type, "stream": stream, "toxicity": toxicity,
            "attributes": {key: round(value) for key, value in attributes.items()},
        }  # fmt: skip
        url = f"/proxies/{link.name}/toxics"
        try:
            self._post(f"add toxic {name} to {link.name}", url, body)
        except ChaosNetError as error:
            if not isinstance(error.__cause__, ProxyExists):
                raise
            self.remove_toxic(link, name)
            self._post(f"add toxic {name} to {link.name}", url, body)

    def remove_toxic(self, link: Link, name: str) -> None:
        """Remove the toxic ``name`` from ``link``'s proxy; absent: no error."""
        self._delete(f"remove toxic {name} from {link.name}",
                     f"/proxies/{link.name}/toxics/{name}", absent_ok=True)  # fmt: skip

    def toxics(self, link: Link) -> list[dict[str, Any]]:
        """The toxics on ``link``'s proxy now, as the API shows them."""
        found: list[dict[str, Any]] = self._get(
            f"list toxics of {link.name}", f"/proxies/{link.name}/toxics"
        )
        return found

    def set_latency(
        self,
        one_way_ms: Mapping[tuple[str, str], float],
        jitter_ms: float = 0.0,
        *,
        name: str = "geo",
    ) -> None:
        """A latency matrix on every link: upstream waits ``one_way_ms[(source region,
        target region)]``, downstream the reverse pair's; pairs missing or 0 get none.
        A previous matrix of the same ``name`` is replaced."""
        self.clear_latency(name)
        for link in self.links:
            pairs = {"upstream": (link.source_region, link.target_region),
                     "downstream": (link.target_region, link.source_region)}  # fmt: skip
            for stream, pair in pairs.items():
                delay_ms = float(one_way_ms.get(pair, 0.0))
                if delay_ms > 0:
                    attributes = {"latency": delay_ms, "jitter": jitter_ms}
                    self.add_toxic(link, name=f"{name}-{stream}", type="latency",
                                   stream=stream, attributes=attributes)  # fmt: skip

    def clear_latency(self, name: str = "geo") -> None:
        """Remove the latency matrix ``name`` from every link (where it is)."""
        for link in self.links:
            present = {t.get("name") for t in self.toxics(link)}
            for stream in STREAMS:
                if f"{name}-{stream}" in present:
                    self.remove_toxic(link, f"{name}-{stream}")

    # -- switching links -----------------------------------------------------------------

    def set_enabled(self, links: Iterable[Link], enabled: bool) -> None:
        """Disabled: the proxy stops listening and drops its connections (a refused dial)."""
        for link in links:
            self._post(f"{'enable' if enabled else 'disable'} {link.name}",
                       f"/proxies/{link.name}", {"enabled": enabled})  # fmt: skip

    def reset_connections(self, links: Iterable[Link]) -> None:
        """Drop every open connection of those links (disable, then enable): after bytes
        were dropped mid-stream, an HTTP/2 connection's framing is lost; a fresh one is not."""
        chosen = list(links)
        self.set_enabled(chosen, False)
        self.set_enabled(chosen, True)

    def heal_all(self) -> None:
        """Every toxic removed and every proxy enabled, on the whole server (POST /reset)."""
        self._post("reset", "/reset", {})

    # -- observing -------------------------------------------------------------------------

    def extensions(self) -> tuple[str, ...]:
        """The server's extensions from ``/version`` (the real Toxiproxy has none)."""
        if self._extensions is None:
            try:
                found = self._get("version", "/version").get("extensions", [])
            except ValueError:  # not JSON: not our server
                found = []
            self._extensions = tuple(str(x) for x in found) if isinstance(found, list) else ()
        return self._extensions

    def counters(self) -> dict[str, dict[str, int]]:
        """Per proxy: connections and bytes (direction counters flattened as
        ``upstream_sent_bytes``); {} when the server has no counters extension."""
        if COUNTERS_EXTENSION not in self.extensions():
            return {}
        found: dict[str, dict[str, int]] = {}
        for link in self.links:
            if link.name not in self._created:
                continue
            answer = self._get(f"counters of {link.name}", f"/proxies/{link.name}/counters")
            found[link.name] = _flatten(answer)
        return found


def _flatten(data: Mapping[str, Any]) -> dict[str, int]:
    flat: dict[str, int] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            for inner, number in value.items():
                if isinstance(number, int) and not isinstance(number, bool):
                    flat[f"{key}_{inner}"] = number
        elif isinstance(value, int) and not isinstance(value, bool):
            flat[key] = value
    return flat


def _text(error: BaseException) -> str:
    detail = error.args[0] if error.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode(errors="replace")
    return str(detail).strip()


def _check(what: str, response: Any) -> None:
    """The client maps 400, 404 and 409; any other failure status is ours to report."""
    status = int(response.status_code)
    if status >= 400:
        body = response.content.decode(errors="replace").strip()
        raise ChaosNetError(f"toxiproxy {what}: HTTP {status}: {body}")
