"""Which roles may call which services: one server interceptor, method prefix -> roles.

Rules of this module: with TLS on, every call has a verified certificate (the handshake
required one from the cluster CA); this interceptor then decides from the role it names.
Peer streams and Deliver come from nodes only; Admin needs an operator; the ledger
services take a client, a router or an operator; health and reflection any holder of a
cluster certificate. A call not allowed is answered PERMISSION_DENIED with what it needed
and who asked, and logged (at most ``REFUSAL_LOGS_PER_S`` lines a second, then counted,
so a caller cannot flood the log).

Why an interceptor that wraps the handler: ``intercept_service`` does not see the call's
auth context, the handler's context does. Wrapping keeps each service free of the check.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, TypeAlias

import grpc

from hongbao.security.identity import Identity, Role, identity_of_auth_context
from hongbao.security.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

LEDGER_ROLES: Final = frozenset({Role.CLIENT, Role.ROUTER, Role.OPERATOR})
ANY_ROLE: Final = frozenset(Role)
RULES: Final[Mapping[str, frozenset[Role]]] = {
    "/hongbao.v1.Peer/": frozenset({Role.NODE}),
    "/hongbao.v1.Admin/": frozenset({Role.OPERATOR}),
    # Routers and nodes follow the cluster state and read the topology and status, so
    # that any one of them can answer `cluster status`; only operators change anything.
    "/hongbao.v1.Admin/ClusterState": frozenset({Role.OPERATOR, Role.ROUTER, Role.NODE}),
    "/hongbao.v1.Admin/Topology": frozenset({Role.OPERATOR, Role.ROUTER, Role.NODE}),
    "/hongbao.v1.Admin/Status": frozenset({Role.OPERATOR, Role.ROUTER}),
    "/hongbao.v1.Wallet/": LEDGER_ROLES,
    "/hongbao.v1.Envelopes/": LEDGER_ROLES,
    "/hongbao.v1.Batch/": LEDGER_ROLES,
}
REFUSAL_LOGS_PER_S: Final = 10

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def allowed_roles(method: str, rules: Mapping[str, frozenset[Role]] = RULES) -> frozenset[Role]:
    """The roles that may call ``method`` (the longest matching prefix wins)."""
    matches = [prefix for prefix in rules if method.startswith(prefix)]
    if not matches:
        return ANY_ROLE
    return rules[max(matches, key=len)]


class RoleInterceptor(grpc.aio.ServerInterceptor):
    """Refuses, with PERMISSION_DENIED, a call whose certificate's role may not make it."""

    def __init__(self, rules: Mapping[str, frozenset[Role]] = RULES) -> None:
        self.rules = dict(rules)
        self.refused_calls = 0
        self._log = RateLimitedLog(log, REFUSAL_LOGS_PER_S, "refused calls")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        return _guard(handler, lambda context: self._check(method, context))

    async def _check(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        allowed = allowed_roles(method, self.rules)
        identity = identity_of_auth_context(context.auth_context())
        if identity is not None and identity.role in allowed:
            return
        self.refused_calls += 1
        who = _describe(identity)
        needed = " or ".join(sorted(role.value for role in allowed))
        self._log.warning("refused %s from %s (%s): needs a certificate of role %s",
                          method, context.peer(), who, needed)  # fmt: skip
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{method} needs a certificate of role {needed}; the caller presents {who}",
        )


def _describe(identity: Identity | None) -> str:
    return identity.uri if identity is not None else "no hongbao identity"


Check = Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]


def _guard(handler: Handler, check: Check) -> Handler:
    """The same handler, with ``check`` awaited before its behaviour runs."""
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for kind, make in kinds:
        behaviour = getattr(handler, kind)
        if behaviour is None:
            continue
        guarded = _guard_behaviour(behaviour, check)
        return make(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def _guard_behaviour(behaviour: Callable[..., Any], check: Check) -> Callable[..., Any]:
    """Wrap an async generator (streamed answers) as one, a coroutine as a coroutine."""
    if inspect.isasyncgenfunction(behaviour):

        async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
            await check(context)
            async for response in behaviour(request, context):
                yield response

        return streaming

    async def single(request: Any, context: Any) -> Any:
        await check(context)
        result = behaviour(request, context)
        return await result if inspect.isawaitable(result) else result

    return single
