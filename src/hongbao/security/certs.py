"""The cluster CA and the certificates it issues, behind ``hongbao certs init`` and ``list``.

Rules of this module: keys are elliptic-curve P-256 (small, fast handshakes, supported by
gRPC's BoringSSL) and are written with mode 0600 into a directory of mode 0700, created
with those modes (never written and then narrowed, so no moment exists when another user
could read them). An existing CA is never replaced unless the caller says so: replacing
it silently would orphan every certificate already deployed with it.

What a directory holds after ``init``: ``ca.crt`` and ``ca.key``; ``node-N.crt/.key`` per
node of the topology, ``router-N.crt/.key`` per ``[[routers]]`` entry if the file has
any, ``operator.crt/.key`` and ``client.crt/.key``. Each certificate names its holder in
a ``hongbao://ROLE/NAME`` URI SAN (see :mod:`hongbao.security.identity`); node and router
certificates also carry their host from the topology as a DNS or IP SAN, which clients
check when they connect, and may serve as well as dial; operator and client certificates
may only dial.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hongbao.config.topology import TopologyError, parse_topology
from hongbao.security.identity import Identity, Role, identity_of_certificate, node_identity

CA_CERT: Final = "ca.crt"
CA_KEY: Final = "ca.key"
CA_DAYS_DEFAULT: Final = 3650
LEAF_DAYS_DEFAULT: Final = 365
SOON_DAYS_DEFAULT: Final = 30
CLOCK_SKEW: Final = dt.timedelta(minutes=5)  # certificates start a little in the past
KEY_MODE: Final = 0o600
CERT_MODE: Final = 0o644
DIR_MODE: Final = 0o700
OPERATOR_NAME: Final = "operator"
CLIENT_NAME: Final = "client"
CERT_FILES_MAX: Final = 10_000  # ``list`` reads at most this many certificates


class CertsError(RuntimeError):
    """A certificates operation was refused; the message says why, for an operator."""


@dataclass(frozen=True, slots=True)
class CertSpec:
    """One certificate to issue: whose, and for which host names and addresses."""

    identity: Identity
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    specs: tuple[CertSpec, ...]
    routers_found: bool  # False: the topology has no [[routers]] table, none were made


def file_stem(identity: Identity) -> str:
    """``node-1``, ``router-2``, ``operator``, ``client``: the certificate's file name."""
    return identity.common_name


def cert_path(directory: Path, identity: Identity) -> Path:
    return directory / f"{file_stem(identity)}.crt"


def key_path(directory: Path, identity: Identity) -> Path:
    return directory / f"{file_stem(identity)}.key"


# -- planning from a topology ----------------------------------------------------------


def plan_from_topology_file(config_path: Path) -> Plan:
    """The certificates a topology needs: its nodes, its routers if any, operator, client.

    ``[[routers]]`` is read here rather than by the topology parser (which does not know
    routers yet): each entry needs an ``id`` and may give a ``host``.
    """
    source = str(config_path)
    try:
        data = tomllib.loads(config_path.read_text())
    except OSError as error:
        raise CertsError(f"{source}: cannot read: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise CertsError(f"{source}: not valid TOML: {error}") from error
    routers = data.pop("routers", None)
    try:
        topology = parse_topology(data, source=source)
    except TopologyError as error:
        raise CertsError(str(error)) from error
    specs = [CertSpec(node_identity(n.node_id), (n.host,)) for n in topology.nodes]
    specs += _router_specs(source, routers)
    specs.append(CertSpec(Identity(Role.OPERATOR, OPERATOR_NAME)))
    specs.append(CertSpec(Identity(Role.CLIENT, CLIENT_NAME)))
    return Plan(tuple(specs), routers_found=routers is not None)


def _router_specs(source: str, routers: object) -> list[CertSpec]:
    if routers is None:
        return []
    if not isinstance(routers, list):
        raise CertsError(f"{source}: routers: must be an array of tables ([[routers]])")
    specs: list[CertSpec] = []
    for position, table in enumerate(routers):
        where = f"{source}: routers[{position}]"
        if not isinstance(table, Mapping):
            raise CertsError(f"{where}: must be a table")
        router_id = table.get("id")
        if not isinstance(router_id, int) or isinstance(router_id, bool) or router_id < 1:
            raise CertsError(f"{where}.id: must be a positive integer, not {router_id!r}")
        host = table.get("host", "127.0.0.1")
        if not isinstance(host, str) or not host:
            raise CertsError(f"{where}.host: must be a host name or address")
        specs.append(CertSpec(Identity(Role.ROUTER, str(router_id)), (host,)))
    return specs


# -- issuing ---------------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def create_ca(
    common_name: str, *, now: dt.datetime, days: int = CA_DAYS_DEFAULT
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, hashes.SHA256()), key


def issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    spec: CertSpec,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate for ``spec`` signed by the CA (tests pass past dates to expire it)."""
    key = new_key()
    identity = spec.identity
    serves = identity.role in (Role.NODE, Role.ROUTER)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
    names += [_host_name(host) for host in dict.fromkeys(spec.hosts)]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if serves:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, identity.role.value),
            x509.NameAttribute(NameOID.COMMON_NAME, identity.common_name),
        ]
    )
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(authority, critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256()), key


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


# -- files -----------------------------------------------------------------------------


def cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` created with ``mode`` (a replaced file gets it too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by umask and ignored for old files
        os.write(fd, data)
    finally:
        os.close(fd)


def write_pair(
    directory: Path,
    stem: str,
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> None:
    write_file(directory / f"{stem}.key", key_pem(key), KEY_MODE)
    write_file(directory / f"{stem}.crt", cert_pem(certificate), CERT_MODE)


def make_private_dir(directory: Path) -> None:
    """``directory`` with mode 0700 (created so, or narrowed if it already existed)."""
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, DIR_MODE)


@dataclass(frozen=True, slots=True)
class InitResult:
    directory: Path
    written: tuple[str, ...]  # file stems, CA first
    routers_found: bool


def init_certs(
    config_path: Path,
    directory: Path,
    *,
    now: dt.datetime,
    force: bool = False,
    days: int = LEAF_DAYS_DEFAULT,
    ca_days: int = CA_DAYS_DEFAULT,
) -> InitResult:
    """A new CA and every certificate of the topology in ``directory``."""
    plan = plan_from_topology_file(config_path)
    existing = [name for name in (CA_CERT, CA_KEY) if (directory / name).exists()]
    if existing and not force:
        raise CertsError(
            f"{directory} already holds a CA ({', '.join(existing)}); "
            "pass --force to replace it and every certificate it issued"
        )
    make_private_dir(directory)
    ca_cert, ca_key = create_ca(f"hongbao CA ({config_path.name})", now=now, days=ca_days)
    write_pair(directory, "ca", ca_cert, ca_key)
    written = ["ca"]
    for spec in plan.specs:
        not_after = now + dt.timedelta(days=days)
        certificate, key = issue(
            ca_cert, ca_key, spec, not_before=now - CLOCK_SKEW, not_after=not_after
        )
        write_pair(directory, file_stem(spec.identity), certificate, key)
        written.append(file_stem(spec.identity))
    return InitResult(directory, tuple(written), plan.routers_found)


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA of ``directory`` (tests issue extra certificates, e.g. expired ones, with it)."""
    certificate = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertsError(f"{directory / CA_KEY}: not an EC private key")
    return certificate, key


# -- listing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertInfo:
    file: str
    subject: str
    role: str  # "ca", a Role's value, or "unknown" (no hongbao:// identity)
    names: tuple[str, ...]  # the SANs, as text
    not_after: dt.datetime
    status: str  # ok | expires soon | expired | not yet valid | not from ca.crt

    @property
    def flagged(self) -> bool:
        return self.status != "ok"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "subject": self.subject,
            "role": self.role,
            "names": list(self.names),
            "not_after": self.not_after.isoformat(),
            "status": self.status,
        }


def list_certs(
    directory: Path, *, now: dt.datetime, soon_days: int = SOON_DAYS_DEFAULT
) -> list[CertInfo]:
    """Every ``*.crt`` of ``directory``, each checked for expiry and for its issuer."""
    if not directory.is_dir():
        raise CertsError(f"{directory}: no such directory")
    paths = sorted(directory.glob("*.crt"))[:CERT_FILES_MAX]
    if not paths:
        raise CertsError(f"{directory}: no certificates (*.crt); run hongbao certs init")
    ca: x509.Certificate | None = None
    if (directory / CA_CERT).exists():
        ca = _read_cert(directory / CA_CERT)
    return [_info(path, _read_cert(path), ca, now, soon_days) for path in paths]


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as error:
        raise CertsError(f"{path}: not a PEM certificate ({error})") from error


def _info(
    path: Path,
    certificate: x509.Certificate,
    ca: x509.Certificate | None,
    now: dt.datetime,
    soon_days: int,
) -> CertInfo:
    is_ca = path.name == CA_CERT
    identity = identity_of_certificate(certificate)
    role = "ca" if is_ca else (identity.role.value if identity is not None else "unknown")
    not_after = certificate.not_valid_after_utc
    if now >= not_after:
        status = "expired"
    elif now < certificate.not_valid_before_utc:
        status = "not yet valid"
    elif not is_ca and not _issued_by(certificate, ca):
        status = "not from ca.crt"
    elif not_after - now < dt.timedelta(days=soon_days):
        status = "expires soon"
    else:
        status = "ok"
    return CertInfo(
        file=path.name,
        subject=certificate.subject.rfc4514_string(),
        role=role,
        names=_san_texts(certificate),
        not_after=not_after,
        status=status,
    )


def _issued_by(certificate: x509.Certificate, ca: x509.Certificate | None) -> bool:
    if ca is None:
        return False
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _san_texts(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    texts: list[str] = []
    general_names: Sequence[x509.GeneralName] = list(extension.value)
    for name in general_names:
        if isinstance(name, x509.UniformResourceIdentifier):
            texts.append(f"URI:{name.value}")
        elif isinstance(name, x509.DNSName):
            texts.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            texts.append(f"IP:{name.value}")
        else:
            texts.append(str(name))
    return tuple(texts)
