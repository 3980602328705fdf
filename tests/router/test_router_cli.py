"""``hongbao router run``: which [[routers]] entry it takes, and its refusals (exit codes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hongbao.cli.main import _register, cli
from hongbao.cli.router import choose_spec
from hongbao.config.routers import RouterSpec
from hongbao.config.topology import load_topology
from hongbao.ops.local import write_topology

_register()
TEMPLATE = Path(__file__).resolve().parents[2] / "configs" / "local.toml"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_topology(tmp_path / "topology.toml", template=TEMPLATE)


def test_without_an_id_the_regions_first_router_is_taken(config: Path) -> None:
    topology = load_topology(config)
    spec = choose_spec(topology, "shanghai", None, None, None)
    assert spec == topology.routers_in("shanghai")[0]
    moved = choose_spec(topology, "shanghai", None, "0.0.0.0", 0)
    assert (moved.router_id, moved.host, moved.port) == (spec.router_id, "0.0.0.0", 0)


def test_a_router_outside_the_file_needs_host_and_port(config: Path) -> None:
    topology = load_topology(config)
    assert choose_spec(topology, "tianjin", 9, "127.0.0.1", 1234) == RouterSpec(
        9, "tianjin", "127.0.0.1", 1234
    )
    with pytest.raises(ValueError, match="--host and --port"):
        choose_spec(topology, "tianjin", 9, None, None)
    with pytest.raises(ValueError, match="serves shenzhen"):
        choose_spec(topology, "tianjin", 1, None, None)
    with pytest.raises(ValueError, match="unknown region"):
        choose_spec(topology, "atlantis", None, None, None)


def test_refusals_exit_non_zero_with_a_reason(config: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(
        cli, ["router", "run", "--config", str(config), "--region", "atlantis", "--insecure"]
    )
    assert unknown.exit_code == 2
    assert "unknown region 'atlantis'" in unknown.output
    without_insecure = runner.invoke(
        cli, ["router", "run", "--config", str(config), "--region", "shenzhen"]
    )
    assert without_insecure.exit_code == 1
    assert "--insecure" in without_insecure.output
    missing = runner.invoke(
        cli, ["router", "run", "--config", str(config.parent / "nope.toml"), "--region", "x"]
    )
    assert missing.exit_code != 0
