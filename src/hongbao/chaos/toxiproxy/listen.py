"""Listen addresses as the reference parses, resolves, shows and binds them.

``localhost:P`` binds the name's first IPv4 address and is shown as ``127.0.0.1:P``; an
empty host, ``0.0.0.0`` or ``::`` bind one dual-stack socket shown as ``[::]:P`` (only
when the caller asks for it: nothing here ever picks a wider address than requested).
Errors carry Go's wording, because the API returns them as the 500 error text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import final

from hongbao.chaos.toxiproxy.limits import LISTEN_BACKLOG

WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class ListenError(Exception):
    """A listen address that cannot be parsed, resolved or bound; ``str`` is Go's text."""


@final
@dataclass(frozen=True, slots=True)
class ListenAddress:
    family: socket.AddressFamily
    host: str
    port: int
    dual_stack: bool

    def shown(self, port: int | None = None) -> str:
        real_port = self.port if port is None else port
        if self.family == socket.AF_INET6:
            return f"[{self.host}]:{real_port}"
        return f"{self.host}:{real_port}"


def split_host_port(address: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``: ``[v6]:port`` or ``host:port``, one colon outside []."""
    if address.startswith("["):
        close = address.find("]")
        if close < 0:
            raise ListenError(f"address {address}: missing ']' in address")
        host, rest = address[1:close], address[close + 1 :]
        if not rest.startswith(":"):
            raise ListenError(f"address {address}: missing port in address")
        return host, rest[1:]
    if ":" not in address:
        raise ListenError(f"address {address}: missing port in address")
    host, port = address.rsplit(":", 1)
    if ":" in host:
        raise ListenError(f"address {address}: too many colons in address")
    return host, port


def parse_port(text: str, address: str) -> int:
    if text == "":
        return 0
    if not text.isdigit():
        raise ListenError(f"lookup tcp/{text}: unknown port")
    port = int(text)
    if port > 65535:
        raise ListenError(f"address {address}: invalid port")
    return port


async def resolve(address: str) -> ListenAddress:
    """The address a listen text binds; raises ``ListenError`` with the API's message."""
    try:
        host, port_text = split_host_port(address)
        port = parse_port(port_text, address)
    except ListenError as error:
        raise ListenError(f"listen tcp: {error}") from None
    if host in WILDCARD_HOSTS:
        return ListenAddress(socket.AF_INET6, "::", port, dual_stack=True)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = await _lookup(host)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return ListenAddress(family, str(ip), port, dual_stack=False)


async def _lookup(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """First IPv4 address of the name, else its first IPv6 one (Go's "tcp" preference)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ListenError(f"listen tcp: lookup {host}: no such host") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for ip in addresses:
        if ip.version == 4:
            return ip
    if not addresses:
        raise ListenError(f"listen tcp: lookup {host}: no such host")
    return addresses[0]


async def shown_form(address: str) -> str | None:
    """The text the address would show once bound (port 0 stays 0); None if unresolvable.

    The reference compares listen addresses this way on update and populate.
    """
    try:
        return (await resolve(address)).shown()
    except ListenError:
        return None


def bind(address: ListenAddress, text: str) -> socket.socket:
    """A listening, non-blocking socket with SO_REUSEADDR (immediate rebinding works)."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if address.dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address.host, address.port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        reason = (error.strerror or str(error)).lower()
        raise ListenError(f"listen tcp {text}: bind: {reason}") from None
    return sock
