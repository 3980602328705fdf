"""Who a certificate names, and reading it from a gRPC call.

Every certificate the cluster CA issues carries its holder's identity twice: the subject
common name (``node-1``, ``operator``, for people reading ``certs list``) and a URI
subject alternative name ``hongbao://ROLE/NAME`` (``hongbao://node/1``), which is what
the servers trust. The URI is read from the verified peer certificate that gRPC puts in
the call's auth context; a common name alone never grants anything, so a certificate
from some other tool with a lucky CN does not become a node.

Why a URI SAN rather than the CN: SANs are the standard place for identities (SPIFFE
does the same) and a node's certificate already needs SANs for its host names.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import grpc
from cryptography import x509

URI_SCHEME: Final = "hongbao"
PEM_CERT_KEY: Final = "x509_pem_cert"
IDENTITY_CACHE_MAX: Final = 1024  # distinct peer certificates parsed and remembered
NAME_CHARS_MAX: Final = 64


class Role(enum.StrEnum):
    """What a certificate's holder is; the servers decide what each role may call."""

    NODE = "node"
    ROUTER = "router"
    OPERATOR = "operator"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class Identity:
    role: Role
    name: str  # the node or router id as text, or the operator's or client's name

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}://{self.role.value}/{self.name}"

    @property
    def common_name(self) -> str:
        if self.role in (Role.NODE, Role.ROUTER):
            return f"{self.role.value}-{self.name}"
        return self.name

    @property
    def node_id(self) -> int | None:
        """The node id a node certificate names; None for every other role."""
        if self.role is not Role.NODE:
            return None
        return int(self.name)


def node_identity(node_id: int) -> Identity:
    return Identity(Role.NODE, str(node_id))


def parse_identity_uri(uri: str) -> Identity | None:
    """``hongbao://node/1`` -> Identity(NODE, "1"); None for anything else."""
    prefix = f"{URI_SCHEME}://"
    if not uri.startswith(prefix):
        return None
    role_text, _, name = uri[len(prefix) :].partition("/")
    try:
        role = Role(role_text)
    except ValueError:
        return None
    if not name or len(name) > NAME_CHARS_MAX or "/" in name:
        return None
    if role in (Role.NODE, Role.ROUTER) and not (name.isdigit() and int(name) > 0):
        return None
    return Identity(role, name)


def identity_of_certificate(certificate: x509.Certificate) -> Identity | None:
    """The one ``hongbao://`` URI SAN of ``certificate``; None if it has none or several."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    found = [
        identity
        for uri in extension.value.get_values_for_type(x509.UniformResourceIdentifier)
        if (identity := parse_identity_uri(uri)) is not None
    ]
    return found[0] if len(found) == 1 else None


@lru_cache(maxsize=IDENTITY_CACHE_MAX)
def _identity_of_pem(pem: bytes) -> Identity | None:
    """Parsing a certificate costs about 50 us; a connection's calls all bring the same one."""
    try:
        return identity_of_certificate(x509.load_pem_x509_certificate(pem))
    except ValueError:
        return None


def identity_of_auth_context(auth_context: Mapping[str, Iterable[bytes]]) -> Identity | None:
    """The identity of the verified peer certificate, or None without TLS or a certificate.

    gRPC fills ``x509_pem_cert`` only after the handshake verified the chain against the
    server's CA, so whatever it holds was issued by the cluster CA.
    """
    pems = list(auth_context.get(PEM_CERT_KEY) or ())
    if len(pems) != 1:
        return None
    return _identity_of_pem(bytes(pems[0]))


def peer_identity(context: grpc.aio.ServicerContext[Any, Any]) -> Identity | None:
    return identity_of_auth_context(context.auth_context())
