"""``hongbao top --once`` on a real cluster: one frame naming every region and leader."""

from __future__ import annotations

import re

from click.testing import CliRunner

from hongbao.cli.top import top
from tests.console.conftest import Running


def test_top_once_names_every_region_and_every_shard_leader(live: Running) -> None:
    result = CliRunner(env={"COLUMNS": "220"}).invoke(
        top, ["--config", str(live.config_path), "--once", "--interval-s", "0.2"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for region in ("shenzhen", "shanghai", "tianjin"):
        assert re.search(rf"│ {region}\s+│ active", out), out
    topology = live.topology
    for shard in [*map(str, range(topology.shard_count)), "meta"]:
        # The fixture led every shard from home: shard s from region s mod 3, node s mod 3 + 1.
        home = int(topology.home_leader_of(int(shard))) if shard != "meta" else None
        row = re.search(rf"^│ {shard}\s+│ (\d+)\s+│ (\w+)\s+│ (\w+)\s+│", out, re.MULTILINE)
        assert row is not None, f"no row of shard {shard} in:\n{out}"
        leader, leader_region, home_region = int(row[1]), row[2], row[3]
        assert leader_region == topology.region_of(leader) == home_region
        if home is not None:
            assert leader == home
    assert "flags: none" in out or "slow_disk" in out
    # The nodes table names the slow-disk threshold and where it is set (rich markup
    # would swallow the brackets if not escaped).
    assert "fsync takes over 100 ms ([runtime] slow_fsync_ms)" in " ".join(out.split())
