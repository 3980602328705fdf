"""``hongbao certs init`` and ``list``: what is written, with which modes, names and dates."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from hongbao.security import certs
from hongbao.security.certs import CertsError, CertSpec
from hongbao.security.identity import Identity, Role, identity_of_certificate

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "configs" / "local.toml"
LOCAL_TEXT = LOCAL.read_text().split("# One router per region")[0]
assert "[[routers]]" not in LOCAL_TEXT
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def hongbao(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hongbao.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(certificate: x509.Certificate) -> list[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return [str(name.value) for name in extension.value]


def routers_topology(tmp_path: Path) -> Path:
    path = tmp_path / "with-routers.toml"
    path.write_text(
        LOCAL_TEXT
        + '\n[[routers]]\nid = 1\nhost = "10.0.0.7"\n\n[[routers]]\nid = 2\nhost = "gw.example"\n'
    )
    return path


def test_init_writes_a_ca_and_one_certificate_per_holder_with_private_modes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "certs"
    no_routers = tmp_path / "no-routers.toml"
    no_routers.write_text(LOCAL_TEXT)
    bare = hongbao("certs", "init", "--config", str(no_routers), "--out", str(tmp_path / "bare"))
    assert bare.returncode == 0, bare.stderr
    assert "no [[routers]] table: no router certificates made" in bare.stdout
    result = hongbao("certs", "init", "--config", str(LOCAL), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "no router certificates" not in result.stdout
    names = sorted(p.name for p in out.iterdir())
    stems = ["ca", "client", "node-1", "node-2", "node-3", "operator",
             "router-1", "router-2", "router-3"]  # fmt: skip
    assert names == sorted([f"{s}.crt" for s in stems] + [f"{s}.key" for s in stems])
    assert mode(out) == 0o700
    for stem in stems:
        assert mode(out / f"{stem}.key") == 0o600, stem
        assert mode(out / f"{stem}.crt") == 0o644, stem
    ca = load(out / "ca.crt")
    for stem in stems[1:]:
        load(out / f"{stem}.crt").verify_directly_issued_by(ca)  # raises if not


def test_certificates_name_their_holder_and_the_topology_hosts(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = certs.init_certs(routers_topology(tmp_path), out, now=NOW)
    assert result.routers_found
    assert set(result.written) >= {"router-1", "router-2"}
    node = load(out / "node-2.crt")
    assert identity_of_certificate(node) == Identity(Role.NODE, "2")
    assert sans(node) == ["hongbao://node/2", "127.0.0.1"]
    assert node.subject.rfc4514_string() == "CN=node-2,OU=node"
    assert sans(load(out / "router-1.crt")) == ["hongbao://router/1", "10.0.0.7"]
    assert sans(load(out / "router-2.crt")) == ["hongbao://router/2", "gw.example"]
    assert identity_of_certificate(load(out / "operator.crt")) == Identity(
        Role.OPERATOR, "operator"
    )
    client = load(out / "client.crt")
    assert sans(client) == ["hongbao://client/client"]
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in usages] == ["1.3.6.1.5.5.7.3.2"]  # client auth only
    assert client.not_valid_after_utc - NOW == dt.timedelta(days=certs.LEAF_DAYS_DEFAULT)


def test_init_refuses_to_replace_a_ca_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    first = hongbao("certs", "init", "--config", str(LOCAL), "--out", str(out))
    assert first.returncode == 0, first.stderr
    ca_before = (out / "ca.crt").read_bytes()
    again = hongbao("certs", "init", "--config", str(LOCAL), "--out", str(out))
    assert again.returncode == 2
    assert "already holds a CA" in again.stderr
    assert "--force" in again.stderr
    assert (out / "ca.crt").read_bytes() == ca_before
    forced = hongbao("certs", "init", "--config", str(LOCAL), "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (out / "ca.crt").read_bytes() != ca_before
    assert mode(out / "ca.key") == 0o600


def test_init_with_a_bad_topology_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("shard_count = 0\n")
    out = tmp_path / "certs"
    result = hongbao("certs", "init", "--config", str(bad), "--out", str(out))
    assert result.returncode == 2
    assert "bad.toml" in result.stderr
    assert not out.exists()
    routers = tmp_path / "routers.toml"
    routers.write_text(LOCAL_TEXT + "\n[[routers]]\nid = 0\n")
    with pytest.raises(CertsError, match=r"routers\[0\]\.id"):
        certs.init_certs(routers, out, now=NOW)


def test_list_shows_every_certificate_and_flags_expired_soon_and_foreign_ones(
    tmp_path: Path,
) -> None:
    out = tmp_path / "certs"
    now = dt.datetime.now(dt.UTC)
    certs.init_certs(LOCAL, out, now=now)
    ca_cert, ca_key = certs.load_ca(out)
    old = CertSpec(Identity(Role.CLIENT, "old"))
    expired, key = certs.issue(
        ca_cert, ca_key, old,
        not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1),
    )  # fmt: skip
    certs.write_pair(out, "old", expired, key)
    soon_spec = CertSpec(Identity(Role.CLIENT, "soon"))
    soon, key = certs.issue(
        ca_cert, ca_key, soon_spec, not_before=now, not_after=now + dt.timedelta(days=3)
    )
    certs.write_pair(out, "soon", soon, key)
    other = tmp_path / "other"
    certs.init_certs(LOCAL, other, now=now)
    (out / "stranger.crt").write_bytes((other / "client.crt").read_bytes())

    result = hongbao("certs", "list", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    status = {c["file"]: c["status"] for c in report["certificates"]}
    assert status == {
        "ca.crt": "ok", "client.crt": "ok", "node-1.crt": "ok", "node-2.crt": "ok",
        "node-3.crt": "ok", "operator.crt": "ok", "old.crt": "expired",
        "router-1.crt": "ok", "router-2.crt": "ok", "router-3.crt": "ok",
        "soon.crt": "expires soon", "stranger.crt": "not from ca.crt",
    }  # fmt: skip
    assert report["flagged"] == 3
    node = next(c for c in report["certificates"] if c["file"] == "node-1.crt")
    assert node["role"] == "node"
    assert node["names"] == ["URI:hongbao://node/1", "IP:127.0.0.1"]
    assert node["subject"] == "CN=node-1,OU=node"

    table = hongbao("certs", "list", str(out))
    assert table.returncode == 0, table.stderr
    assert "expires soon" in table.stdout
    assert "12 certificates, 3 flagged" in table.stdout


def test_list_of_a_directory_without_certificates_exits_2(tmp_path: Path) -> None:
    missing = hongbao("certs", "list", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert "no such directory" in missing.stderr
    empty = hongbao("certs", "list", str(tmp_path))
    assert empty.returncode == 2
    assert "no certificates" in empty.stderr
