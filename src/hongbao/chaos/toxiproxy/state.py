"""The registry of proxies and every API operation on it, with the reference's errors.

Rules of this module: operations run one at a time (one lock), so a create racing a
delete cannot leave a half-made proxy; each check happens in the reference's order
(toxiproxy-api.md §3) and fails with an ``ApiError`` carrying its status and text; no
request can raise anything else out of here except a programmer error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import final

from hongbao.chaos.toxiproxy.jsonbody import (
    PROXY_FIELDS,
    TOXIC_FIELDS,
    TOXIC_UPDATE_FIELDS,
    BodyError,
    decode,
    read_attributes,
    read_fields,
)
from hongbao.chaos.toxiproxy.limits import PROXIES_MAX, TOXICS_PER_PROXY_MAX
from hongbao.chaos.toxiproxy.listen import ListenError, resolve, shown_form
from hongbao.chaos.toxiproxy.proxy import Proxy
from hongbao.chaos.toxiproxy.spec import (
    TOXIC_ATTRIBUTES,
    JsonValue,
    ToxicSpec,
    float32,
    parse_direction,
)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PopulateError(ApiError):
    """A populate failure still answers the proxies done so far (None: nothing was)."""

    def __init__(self, error: ApiError, done: list[JsonValue] | None) -> None:
        super().__init__(error.status, error.message)
        self.done = done


def body_error(error: BodyError) -> ApiError:
    return ApiError(400, f"bad request body: {error}")


@final
@dataclass(frozen=True, slots=True)
class ProxyRequest:
    name: str
    listen: str
    upstream: str
    enabled: bool


def proxy_request(value: JsonValue, *, where: str = "") -> ProxyRequest:
    """A create/populate entry: name, then upstream, must be non-empty."""
    fields = read_fields(value, PROXY_FIELDS, struct_name="toxiproxy.Proxy")
    name, listen = fields.get("name", ""), fields.get("listen", "")
    upstream, enabled = fields.get("upstream", ""), fields.get("enabled", True)
    assert isinstance(name, str)
    assert isinstance(listen, str)
    assert isinstance(upstream, str)
    assert isinstance(enabled, bool)
    if name == "":
        raise ApiError(400, f"missing required field: name{where}")
    if upstream == "":
        raise ApiError(400, f"missing required field: upstream{where}")
    return ProxyRequest(name, listen, upstream, enabled)


@final
class Registry:
    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = seed
        self._proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()

    def proxy(self, name: str) -> Proxy:
        proxy = self._proxies.get(name)
        if proxy is None:
            raise ApiError(404, "proxy not found")
        return proxy

    def list_json(self) -> dict[str, JsonValue]:
        return {name: self._proxies[name].to_json() for name in sorted(self._proxies)}

    async def create(self, body: bytes) -> Proxy:
        try:
            request = proxy_request(decode(body))
        except BodyError as error:
            raise body_error(error) from None
        if request.name in self._proxies:
            raise ApiError(409, "proxy already exists")
        return await self._start_new(request)

    async def _start_new(self, request: ProxyRequest) -> Proxy:
        if len(self._proxies) >= PROXIES_MAX:
            raise ApiError(400, f"too many proxies (limit {PROXIES_MAX})")
        proxy = Proxy(
            name=request.name, listen=request.listen, upstream=request.upstream, seed=self.seed
        )
        if request.enabled:
            try:
                await proxy.start()
            except ListenError as error:
                raise ApiError(500, str(error)) from None
        self._proxies[proxy.name] = proxy
        return proxy

    async def update(self, name: str, body: bytes) -> Proxy:
        proxy = self.proxy(name)
        try:
            fields = read_fields(decode(body), PROXY_FIELDS, struct_name="toxiproxy.Proxy")
        except BodyError as error:
            raise body_error(error) from None
        listen = fields.get("listen", proxy.listen)
        upstream = fields.get("upstream", proxy.upstream)
        enabled = fields.get("enabled", proxy.enabled)
        assert isinstance(listen, str)
        assert isinstance(upstream, str)
        assert isinstance(enabled, bool)
        listen_changed = False
        if listen != proxy.listen:
            try:
                listen_changed = (await resolve(listen)).shown() != proxy.listen
            except ListenError as error:
                await proxy.stop()
                proxy.listen = listen
                raise ApiError(500, str(error)) from None
        if listen_changed or upstream != proxy.upstream:
            await proxy.stop()
            proxy.listen, proxy.upstream = listen, upstream
        if enabled and not proxy.enabled:
            try:
                await proxy.start()
            except ListenError as error:
                raise ApiError(500, str(error)) from None
        elif not enabled and proxy.enabled:
            await proxy.stop()
        return proxy

    async def delete(self, name: str) -> None:
        proxy = self.proxy(name)
        await proxy.stop()
        del self._proxies[name]

    async def populate(self, body: bytes) -> list[JsonValue]:
        try:
            value = decode(body)
            if value is not None and not isinstance(value, list):
                raise BodyError("json: cannot unmarshal object into Go value of type "
                                "[]toxiproxy.Proxy")
            entries = value or []
            requests = [proxy_request(e, where=f" at proxy {i}") for i, e in enumerate(entries, 1)]
        except BodyError as error:
            raise PopulateError(body_error(error), None) from None
        except ApiError as error:
            raise PopulateError(error, None) from None
        done: list[JsonValue] = []
        for request in requests:
            try:
                done.append((await self._populate_one(request)).to_json())
            except ApiError as error:
                raise PopulateError(error, done) from None
        return done

    async def _populate_one(self, request: ProxyRequest) -> Proxy:
        existing = self._proxies.get(request.name)
        if existing is not None:
            shown = await shown_form(request.listen)
            if shown == existing.listen and request.upstream == existing.upstream:
                return existing
            await existing.stop()
            del self._proxies[request.name]
        try:
            return await self._start_new(request)
        except ApiError:
            if existing is not None:
                # The reference leaves the old proxy registered, stopped.
                self._proxies[request.name] = existing
            raise

    async def reset(self) -> None:
        for proxy in list(self._proxies.values()):
            try:
                await proxy.start()
            except ListenError as error:
                raise ApiError(500, str(error)) from None
            for spec in list(proxy.toxics):
                await proxy.remove_toxic(spec)

    async def add_toxic(self, name: str, body: bytes) -> ToxicSpec:
        proxy = self.proxy(name)
        try:
            fields = read_fields(decode(body), TOXIC_FIELDS, struct_name="toxics.ToxicWrapper")
        except BodyError as error:
            raise body_error(error) from None
        stream = fields.get("stream", "downstream")
        toxic_type, toxic_name = fields.get("type", ""), fields.get("name", "")
        toxicity = fields.get("toxicity", 1.0)
        assert isinstance(stream, str)
        assert isinstance(toxic_type, str)
        assert isinstance(toxic_name, str)
        assert isinstance(toxicity, int | float)
        direction = parse_direction(stream)
        if direction is None:
            raise ApiError(400, "stream was invalid, can be either upstream or downstream")
        toxic_name = toxic_name or f"{toxic_type}_{stream}"
        if toxic_type not in TOXIC_ATTRIBUTES:
            raise ApiError(400, "invalid toxic type")
        if proxy.find_toxic(toxic_name) is not None:
            raise ApiError(409, "toxic already exists")
        if len(proxy.toxics) >= TOXICS_PER_PROXY_MAX:
            raise ApiError(400, f"too many toxics (limit {TOXICS_PER_PROXY_MAX})")
        try:
            attributes = read_attributes(
                fields.get("attributes"), TOXIC_ATTRIBUTES[toxic_type], toxic_type=toxic_type
            )
        except BodyError as error:
            raise body_error(error) from None
        spec = ToxicSpec(toxic_name, toxic_type, stream, direction, float32(toxicity), attributes)
        await proxy.add_toxic(spec)
        return spec

    def toxic(self, name: str, toxic_name: str) -> tuple[Proxy, ToxicSpec]:
        proxy = self.proxy(name)
        spec = proxy.find_toxic(toxic_name)
        if spec is None:
            raise ApiError(404, "toxic not found")
        return proxy, spec

    async def update_toxic(self, name: str, toxic_name: str, body: bytes) -> ToxicSpec:
        proxy, spec = self.toxic(name, toxic_name)
        try:
            fields = read_fields(decode(body), TOXIC_UPDATE_FIELDS,
                                 struct_name="toxics.ToxicWrapper")
            attributes = read_attributes(
                fields.get("attributes"), TOXIC_ATTRIBUTES[spec.type], toxic_type=spec.type
            )
        except BodyError as error:
            raise body_error(error) from None
        toxicity = fields.get("toxicity")
        assert toxicity is None or isinstance(toxicity, int | float)
        updated = spec.updated(attributes=attributes, toxicity=toxicity)
        await proxy.update_toxic(updated)
        return updated

    async def delete_toxic(self, name: str, toxic_name: str) -> None:
        proxy, spec = self.toxic(name, toxic_name)
        await proxy.remove_toxic(spec)

    async def close(self) -> None:
        for proxy in list(self._proxies.values()):
            await proxy.stop()

