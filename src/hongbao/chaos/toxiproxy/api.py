"""The HTTP API: Toxiproxy 2.12's routes, status codes and bodies, on aiohttp.

Rules of this module: routing, the browser block, the request id and the 25 s handler
limit live in one middleware; every handler only turns a request into a ``Registry``
call and its result into the reference's response shape (toxiproxy-api.md §2 to §3).
Mutations run one at a time under the registry's lock and are shielded, so a client
that gives up (or the 503 of the handler limit) never leaves a half-rewired chain.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from hongbao.chaos.toxiproxy.limits import HANDLER_TIMEOUT_S, REQUEST_BODY_BYTES_MAX
from hongbao.chaos.toxiproxy.spec import EXTENSION_TOXICS, JsonValue
from hongbao.chaos.toxiproxy.state import ApiError, PopulateError, Registry

REFERENCE_VERSION: Final = "2.12.0"
EXTENSIONS: Final = ("toxic:" + EXTENSION_TOXICS[0], "seed", "counters")
REGISTRY_KEY: Final = web.AppKey("registry", Registry)
REQUEST_ID_ALPHABET: Final = string.ascii_lowercase + string.digits
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def compact_json(value: JsonValue) -> bytes:
    """Go's encoder: compact, UTF-8, with <, > and & escaped (HTML-safe)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text.encode()


def json_response(value: JsonValue, status: int = 200) -> web.Response:
    return web.Response(status=status, body=compact_json(value), content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    """Go's error helper: a JSON object plus newline, sent as text/plain."""
    body = compact_json({"error": error.message, "status": error.status}) + b"\n"
    response = web.Response(status=error.status, body=body)
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def text_response(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain", charset="utf-8")


@web.middleware
async def reference_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    routing_error = request.match_info.http_exception
    if isinstance(routing_error, web.HTTPMethodNotAllowed):
        return web.Response(status=405)
    if routing_error is not None:
        return text_response(404, "404 page not found\n")
    if request.headers.get("User-Agent", "").startswith("Mozilla/"):
        response: web.StreamResponse = text_response(403, "User agent not allowed\n")
    else:
        response = await _bounded(request, handler)
    response.headers["X-Toxiproxy-Request-Id"] = "".join(
        secrets.choice(REQUEST_ID_ALPHABET) for _ in range(20)
    )
    return response


_RUNNING: set[asyncio.Task[web.StreamResponse]] = set()


async def _bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the handler to its end even if the answer is a 503 after the handler limit."""
    task = asyncio.get_running_loop().create_task(_answer(request, handler))
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    try:
        return await asyncio.wait_for(asyncio.shield(task), HANDLER_TIMEOUT_S)
    except TimeoutError:
        return web.Response(status=503)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PopulateError as error:
        body: dict[str, JsonValue] = {
            "error": error.message, "status": error.status, "proxies": error.done,
        }
        return json_response(body, error.status)
    except ApiError as error:
        return error_response(error)
    except web.HTTPRequestEntityTooLarge:
        return error_response(ApiError(413, "request body too large"))


def _registry(request: web.Request) -> Registry:
    return request.app[REGISTRY_KEY]


async def _body(request: web.Request) -> bytes:
    return await request.read()


async def list_proxies(request: web.Request) -> web.Response:
    return json_response(_registry(request).list_json())


async def _change(
    request: web.Request,
    change: Callable[[Registry, bytes], Awaitable[JsonValue]],
    *,
    lookup: Callable[[Registry], object] = lambda _: None,
    status: int = 200,
) -> web.Response:
    """Look up first (the reference answers 404 before 400), then read the body and make
    the change under the registry's lock."""
    registry = _registry(request)
    lookup(registry)
    body = await _body(request)
    async with registry.lock:
        return json_response(await change(registry, body), status)


async def create_proxy(request: web.Request) -> web.Response:
    async def change(registry: Registry, body: bytes) -> JsonValue:
        return (await registry.create(body)).to_json()

    return await _change(request, change, status=201)


async def populate(request: web.Request) -> web.Response:
    async def change(registry: Registry, body: bytes) -> JsonValue:
        return {"proxies": await registry.populate(body)}

    return await _change(request, change, status=201)


async def get_proxy(request: web.Request) -> web.Response:
    return json_response(_registry(request).proxy(request.match_info["proxy"]).to_json())


async def update_proxy(request: web.Request) -> web.Response:
    name = request.match_info["proxy"]

    async def change(registry: Registry, body: bytes) -> JsonValue:
        return (await registry.update(name, body)).to_json()

    return await _change(request, change, lookup=lambda registry: registry.proxy(name))


async def delete_proxy(request: web.Request) -> web.Response:
    registry = _registry(request)
    async with registry.lock:
        await registry.delete(request.match_info["proxy"])
    return web.Response(status=204)


async def list_toxics(request: web.Request) -> web.Response:
    proxy = _registry(request).proxy(request.match_info["proxy"])
    toxics = proxy.to_json()["toxics"]
    return json_response(toxics)


async def create_toxic(request: web.Request) -> web.Response:
    name = request.match_info["proxy"]

    async def change(registry: Registry, body: bytes) -> JsonValue:
        return (await registry.add_toxic(name, body)).to_json()

    return await _change(request, change, lookup=lambda registry: registry.proxy(name))


async def get_toxic(request: web.Request) -> web.Response:
    match = request.match_info
    _, spec = _registry(request).toxic(match["proxy"], match["toxic"])
    return json_response(spec.to_json())


async def update_toxic(request: web.Request) -> web.Response:
    name, toxic = request.match_info["proxy"], request.match_info["toxic"]

    async def change(registry: Registry, body: bytes) -> JsonValue:
        return (await registry.update_toxic(name, toxic, body)).to_json()

    return await _change(request, change, lookup=lambda registry: registry.toxic(name, toxic))


async def delete_toxic(request: web.Request) -> web.Response:
    registry, match = _registry(request), request.match_info
    async with registry.lock:
        await registry.delete_toxic(match["proxy"], match["toxic"])
    return web.Response(status=204)


async def reset(request: web.Request) -> web.Response:
    registry = _registry(request)
    async with registry.lock:
        await registry.reset()
    return web.Response(status=204)


async def version(request: web.Request) -> web.Response:
    """The reference's text (with its space after the colon) plus the extensions."""
    extensions = ", ".join(f'"{name}"' for name in EXTENSIONS)
    text = (f'{{"version": "{REFERENCE_VERSION}", "server": "hongbao", '
            f'"extensions": [{extensions}]}}\n')
    response = web.Response(body=text.encode())
    response.headers["Content-Type"] = "application/json;charset=utf-8"
    return response


async def proxy_counters(request: web.Request) -> web.Response:
    """Extension: live per-proxy connection and byte counters."""
    return json_response(_registry(request).proxy(request.match_info["proxy"]).counters_json())


# A name is any run of characters but "/", as gorilla/mux matches it for the reference
# server; aiohttp's default pattern also stops at "{" and "}", so a toxic created as
# "a}b" could never be read, patched or deleted (found by test_robustness).
_PROXY = "{proxy:[^/]+}"
_TOXIC = "{toxic:[^/]+}"


def make_app(registry: Registry) -> web.Application:
    app = web.Application(
        client_max_size=REQUEST_BODY_BYTES_MAX, middlewares=[reference_middleware]
    )
    app[REGISTRY_KEY] = registry
    router = app.router
    router.add_get("/proxies", list_proxies, allow_head=False)
    router.add_post("/proxies", create_proxy)
    router.add_post("/populate", populate)
    router.add_get(f"/proxies/{_PROXY}", get_proxy, allow_head=False)
    router.add_post(f"/proxies/{_PROXY}", update_proxy)
    router.add_patch(f"/proxies/{_PROXY}", update_proxy)
    router.add_delete(f"/proxies/{_PROXY}", delete_proxy)
    router.add_get(f"/proxies/{_PROXY}/toxics", list_toxics, allow_head=False)
    router.add_post(f"/proxies/{_PROXY}/toxics", create_toxic)
    router.add_get(f"/proxies/{_PROXY}/counters", proxy_counters, allow_head=False)
    router.add_get(f"/proxies/{_PROXY}/toxics/{_TOXIC}", get_toxic, allow_head=False)
    router.add_post(f"/proxies/{_PROXY}/toxics/{_TOXIC}", update_toxic)
    router.add_patch(f"/proxies/{_PROXY}/toxics/{_TOXIC}", update_toxic)
    router.add_delete(f"/proxies/{_PROXY}/toxics/{_TOXIC}", delete_toxic)
    router.add_post("/reset", reset)
    router.add_get("/version", version, allow_head=False)
    return app
