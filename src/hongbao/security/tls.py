"""gRPC credentials from a certificates directory, and when running without them is allowed.

Rules of this module: TLS is mutual on every link. A node serves with its own certificate
and requires one from every caller (``require_client_auth``), verified against the
cluster CA alone: a certificate of another CA, an expired one, or none fails the
handshake before any RPC exists. A node dials its peers with the same certificate. A
client dials with ``client.crt`` for the ledger services and ``operator.crt`` for Admin
(each falling back on the other when a directory holds only one of them).

Where the certificates are: ``--certs-dir`` (the commands that take it set
``$HONGBAO_CERTS_DIR``, so processes they start inherit it), else ``$HONGBAO_CERTS_DIR``,
else ``certs_dir`` in the topology (relative to the topology file).

Running without TLS is a visible choice: the topology says ``tls = false`` (the default
only when every host is loopback), and every command that starts a process says
``--insecure``; a topology with a non-loopback host and ``tls = false`` is refused unless
``--insecure`` is given. This is CockroachDB's rule: nothing is insecure by accident.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc
from cryptography import x509

from hongbao.config.topology import Topology, is_loopback_host
from hongbao.security.certs import CA_CERT, CLIENT_NAME, OPERATOR_NAME, cert_path, key_path
from hongbao.security.identity import Identity, Role, identity_of_certificate, node_identity

CERTS_DIR_ENV: Final = "HONGBAO_CERTS_DIR"


class TlsError(RuntimeError):
    """TLS is asked for but cannot be set up; the message tells an operator what to do."""


def all_loopback(topology: Topology) -> bool:
    """Every process of the topology (nodes and routers) listens on a loopback address."""
    hosts = [n.host for n in topology.nodes] + [r.host for r in topology.routers]
    return all(is_loopback_host(host) for host in hosts)


def insecure_problem(topology: Topology, *, insecure: bool, starts_process: bool) -> str | None:
    """Why this command may not run as asked, or None.

    ``starts_process``: ``node run`` (and later ``router run``) must say ``--insecure`` to
    run without TLS at all; other commands only when a host is not loopback.
    """
    if insecure or topology.tls:
        return None
    if not all_loopback(topology):
        return (
            "the topology has hosts that are not loopback and says tls = false: anyone on "
            "the network could act as a node, an operator or a client. Set tls = true "
            "(certificates from `hongbao certs init`) or pass --insecure"
        )
    if starts_process:
        return (
            "the topology says tls = false: pass --insecure to run without TLS (anyone "
            "who can reach the port can act as a node, an operator or a client), or set "
            "tls = true with certificates from `hongbao certs init`"
        )
    return None


def certs_dir_of(topology: Topology) -> Path:
    """``$HONGBAO_CERTS_DIR``, else the topology's ``certs_dir``; TlsError if neither."""
    from_env = os.environ.get(CERTS_DIR_ENV)
    if from_env:
        return Path(from_env)
    if topology.certs_dir is not None:
        return Path(topology.certs_dir)
    raise TlsError(
        "the topology says tls = true but names no certificates: pass --certs-dir DIR, "
        f"set ${CERTS_DIR_ENV}, or add certs_dir to the topology (create the directory "
        "with `hongbao certs init`), or pass --insecure"
    )


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """One identity's PEM files, read once: the CA, the certificate and its key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    identity: Identity

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.ca_pem,
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.key_pem,
            certificate_chain=self.cert_pem,
        )


def load_files(directory: Path, identity: Identity, *, now: dt.datetime | None = None) -> TlsFiles:
    """The files of ``identity`` in ``directory``, checked: present, named right, in date."""
    paths = (directory / CA_CERT, cert_path(directory, identity), key_path(directory, identity))
    try:
        ca_pem, cert_pem, key_pem = (path.read_bytes() for path in paths)
    except OSError as error:
        raise TlsError(
            f"{directory}: cannot read the certificate of {identity.uri} ({error}); "
            "create the directory with `hongbao certs init`"
        ) from error
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as error:
        raise TlsError(f"{paths[1]}: not a PEM certificate ({error})") from error
    named = identity_of_certificate(certificate)
    if named != identity:
        shown = named.uri if named is not None else "no hongbao:// identity"
        raise TlsError(f"{paths[1]}: names {shown}, not {identity.uri}")
    moment = now or dt.datetime.now(dt.UTC)
    if certificate.not_valid_after_utc <= moment:
        raise TlsError(
            f"{paths[1]}: expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    return TlsFiles(ca_pem, cert_pem, key_pem, identity)


def node_files(topology: Topology, node_id: int) -> TlsFiles:
    return load_files(certs_dir_of(topology), node_identity(node_id))


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a client dials with: one identity for the ledger services, one for Admin."""

    ledger: TlsFiles
    admin: TlsFiles

    @property
    def one_identity(self) -> bool:
        return self.ledger.identity == self.admin.identity


def client_credentials_from(directory: Path) -> ClientCredentials:
    """``client`` for the ledger and ``operator`` for Admin, each standing in for the other."""
    client = Identity(Role.CLIENT, CLIENT_NAME)
    operator = Identity(Role.OPERATOR, OPERATOR_NAME)
    found: dict[Role, TlsFiles] = {}
    problems: list[str] = []
    for identity in (client, operator):
        if not cert_path(directory, identity).exists():
            continue
        try:
            found[identity.role] = load_files(directory, identity)
        except TlsError as error:
            problems.append(str(error))
    if not found:
        detail = "; ".join(problems) or "neither client.crt nor operator.crt is there"
        raise TlsError(f"{directory}: no usable client or operator certificate ({detail})")
    ledger = found.get(Role.CLIENT) or found[Role.OPERATOR]
    admin = found.get(Role.OPERATOR) or found[Role.CLIENT]
    return ClientCredentials(ledger=ledger, admin=admin)


def client_credentials(topology: Topology) -> ClientCredentials | None:
    """None without TLS; else the credentials of the certificates directory."""
    if not topology.tls:
        return None
    return client_credentials_from(certs_dir_of(topology))
