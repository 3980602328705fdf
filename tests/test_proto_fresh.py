"""The committed generated code matches the .proto files, and the check can tell when not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from hongbao.proto import generate
from hongbao.proto.generate import OUT_DIR_DEFAULT, PROTO_ROOT_DEFAULT


def _copy_protos(tmp_path: Path) -> Path:
    root = tmp_path / "protos"
    shutil.copytree(PROTO_ROOT_DEFAULT / "hongbao", root / "hongbao")
    return root


def test_committed_generated_code_is_fresh() -> None:
    problems = generate.check(proto_root=PROTO_ROOT_DEFAULT, out_dir=OUT_DIR_DEFAULT)
    assert problems == [], "\n".join([*problems, "regenerate with `make proto`"])


def test_check_reports_a_changed_proto_as_stale(tmp_path: Path) -> None:
    root = _copy_protos(tmp_path)
    ledger = root / "hongbao" / "v1" / "ledger.proto"
    ledger.write_text(ledger.read_text() + "\nmessage AddedSinceGeneration {}\n")

    problems = generate.check(proto_root=root, out_dir=OUT_DIR_DEFAULT)

    ledger_pb2 = OUT_DIR_DEFAULT / "hongbao" / "v1" / "ledger_pb2.py"
    assert f"stale: {ledger_pb2}" in problems
    assert f"stale: {ledger_pb2.with_suffix('.pyi')}" in problems
    assert not any("peer_pb2" in line for line in problems)


def test_check_reports_missing_and_extra_files(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    shutil.copytree(OUT_DIR_DEFAULT, out, ignore=shutil.ignore_patterns("__pycache__"))
    (out / "hongbao" / "v1" / "admin_pb2.pyi").unlink()
    (out / "hongbao" / "v1" / "gone_pb2.py").write_text("# from a deleted proto\n")

    problems = generate.check(proto_root=PROTO_ROOT_DEFAULT, out_dir=out)

    assert problems == [
        f"missing: {out / 'hongbao' / 'v1' / 'admin_pb2.pyi'}",
        f"extra (no longer generated): {out / 'hongbao' / 'v1' / 'gone_pb2.py'}",
    ]


def test_generate_is_deterministic_and_prunes_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    (out / "hongbao" / "v1").mkdir(parents=True)
    (out / "hongbao" / "v1" / "gone_pb2.py").write_text("# from a deleted proto\n")
    (out / "notes.txt").write_text("not ours: left alone\n")

    first = generate.generate(proto_root=PROTO_ROOT_DEFAULT, out_dir=out)
    snapshot = {rel: (out / rel).read_bytes() for rel in first}
    second = generate.generate(proto_root=PROTO_ROOT_DEFAULT, out_dir=out)

    assert first == second
    assert snapshot == {rel: (out / rel).read_bytes() for rel in second}
    assert not (out / "hongbao" / "v1" / "gone_pb2.py").exists()
    assert (out / "notes.txt").exists()
    assert generate.check(proto_root=PROTO_ROOT_DEFAULT, out_dir=out) == []


def test_generated_imports_point_into_the_package() -> None:
    for path in OUT_DIR_DEFAULT.rglob("*_pb2*.py*"):
        for line in path.read_text().splitlines():
            assert not line.startswith("from hongbao.v1 "), f"{path}: {line}"
    from hongbao.proto.gen.hongbao.v1 import admin_pb2_grpc, ledger_pb2_grpc, peer_pb2_grpc

    assert hasattr(ledger_pb2_grpc, "add_BatchServicer_to_server")
    assert hasattr(admin_pb2_grpc, "AdminStub")
    assert hasattr(peer_pb2_grpc, "PeerServicer")


def test_cli_check_exits_non_zero_naming_the_stale_file(tmp_path: Path) -> None:
    root = _copy_protos(tmp_path)
    peer = root / "hongbao" / "v1" / "peer.proto"
    peer.write_text(peer.read_text().replace("uint64 batch_seq = 4;", "uint64 batch_seq = 40;"))
    command = [sys.executable, "-m", "hongbao.proto.generate", "--check"]

    fresh = subprocess.run(command, capture_output=True, text=True, check=False)
    stale = subprocess.run(
        [*command, "--proto-root", str(root)], capture_output=True, text=True, check=False
    )

    assert fresh.returncode == 0, fresh.stderr
    assert stale.returncode == 1
    assert f"stale: {OUT_DIR_DEFAULT / 'hongbao' / 'v1' / 'peer_pb2.py'}" in stale.stderr
    assert "make proto" in stale.stderr


def test_cli_reports_a_broken_proto(tmp_path: Path) -> None:
    root = _copy_protos(tmp_path)
    (root / "hongbao" / "v1" / "broken.proto").write_text('syntax = "proto3";\nmessage {\n')
    done = subprocess.run(
        [sys.executable, "-m", "hongbao.proto.generate", "--check", "--proto-root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "protoc failed" in done.stderr
