"""The rich tables of ``hongbao cluster status``: regions, nodes, shards, anomalies.

Rules of this module: presentation only. Every figure comes from one
:class:`~hongbao.ops.status.ClusterStatus` snapshot, every column is labelled with its
unit, and the thresholds behind the health words are printed with them.
"""

from __future__ import annotations

import time

from rich.console import Console, JustifyMethod, OverflowMethod
from rich.table import Table

from hongbao.config.topology import META_GROUP_ID
from hongbao.ops.status import ClusterStatus, Health
from hongbao.proto.gen.hongbao.v1 import admin_pb2

_HEALTH_STYLE: dict[Health, str] = {"up": "green", "suspect": "yellow", "down": "red"}
_STATE_STYLE = {"active": "green", "draining": "yellow", "drained": "cyan"}


def _health(word: Health) -> str:
    return f"[{_HEALTH_STYLE[word]}]{word}[/{_HEALTH_STYLE[word]}]"


def _ago(ms: int, now_ms: int) -> str:
    return "-" if ms <= 0 else f"{(now_ms - ms) / 1000:.0f} s ago"


def regions_table(status: ClusterStatus) -> Table:
    state = status.cluster_state
    now_ms = status.taken_at_ms or int(time.time() * 1000)
    version = "unknown" if state is None else str(state.version)
    table = Table(title=f"regions (cluster {status.expected_cluster_id or '?'}, state v{version})")
    for name in ("region", "state", "since", "drain deadline", "nodes", "routers"):
        table.add_column(name)
    for region in status.topology.regions:
        entry = None if state is None else state.region(region.name)
        word = "unknown" if state is None else str(state.state_of(region.name))
        style = _STATE_STYLE.get(word, "red")
        nodes = " ".join(
            f"{n.spec.node_id}:{_health(status.health_of(n))}"
            for n in status.nodes
            if n.spec.region == region.name
        )
        routers = " ".join(
            f"{r.spec.router_id}:" + ("[green]up[/green]" if r.cluster_state else "[red]down[/red]")
            for r in status.routers
            if r.spec.region == region.name
        )
        deadline = "-"
        if entry is not None and entry.deadline_ms:
            left_s = (entry.deadline_ms - now_ms) / 1000
            deadline = (
                f"in {left_s:.0f} s" if left_s >= 0 else f"[red]{-left_s:.0f} s overdue[/red]"
            )
        table.add_row(
            region.name,
            f"[{style}]{word}[/{style}]",
            _ago(entry.since_ms if entry else 0, now_ms),
            deadline,
            nodes or "-",
            routers or "-",
        )
    t = status.thresholds()
    table.caption = (
        f"health: up = answered within {t['suspect_after_ms']} ms; suspect = answered later, "
        f"or silent but heard by a leader within an election timeout; down = no answer "
        f"within {t['down_after_ms']} ms (\\[router] suspect_after_ms, down_after_ms)"
    )
    return table


def status_table(status: ClusterStatus) -> Table:
    """One row per node, grouped by region: DESIGN section 5's operator view."""
    table = Table(title=f"nodes ({status.topology.shard_count} shards)")
    columns: list[tuple[str, JustifyMethod, bool]] = [
        ("region", "left", True), ("node", "right", True), ("address", "left", True),
        ("health", "left", True), ("shards led", "left", False), ("skew", "right", True),
        ("meta", "left", True), ("applied Σ", "right", True), ("apply lag", "right", True),
        ("log lag", "right", True), ("state v", "right", True),
    ]  # fmt: skip
    for name, justify, no_wrap in columns:
        overflow: OverflowMethod = "ellipsis" if no_wrap else "fold"
        table.add_column(name, justify=justify, no_wrap=no_wrap, overflow=overflow)
    for region in status.topology.regions:
        for node in status.nodes:
            if node.spec.region != region.name:
                continue
            node_id = int(node.spec.node_id)
            lag = status.log_lag_of(node_id)
            lag_text = "-" if lag is None else str(lag)
            health = _health(status.health_of(node))
            if node.status is None:
                table.add_row(region.name, str(node_id), node.spec.address, health,
                              "", "", "", "", "", lag_text, "")  # fmt: skip
                continue
            shards = node.status.shards
            led = [s.shard_id for s in shards if s.role == admin_pb2.ROLE_LEADER]
            meta = ""
            if node.status.HasField("meta_group"):
                is_leader = node.status.meta_group.role == admin_pb2.ROLE_LEADER
                meta = "leader" if is_leader else "replica"
            table.add_row(
                region.name, str(node_id), node.spec.address, health,
                ",".join(map(str, led)) or "-", f"{status.leader_skew(node_id):+d}", meta,
                str(sum(s.applied_index for s in shards)),
                str(sum(s.apply_lag_entries for s in shards)),
                lag_text, str(node.status.cluster_state_version),
            )  # fmt: skip
    leaderless = status.leaderless_shards()
    if leaderless:
        table.caption = f"[red]shards without a leader: {leaderless}[/red]"
    else:
        table.caption = (
            "every shard has a leader; skew: shards led minus shards homed there; "
            "apply lag: committed, not applied; log lag: entries behind, seen by leaders"
        )
    return table


def shards_table(status: ClusterStatus) -> Table:
    """One row per shard (and the meta group): leader, region, term, indexes, lag."""
    table = Table(title="shards")
    for name in ("shard", "leader", "leader region", "home region", "term", "commit",
                 "applied", "follower lag max"):  # fmt: skip
        table.add_column(name, justify="left" if "region" in name else "right")
    for row in status.shard_rows():
        leader = row["leader_node_id"]
        away = row["leader_region"] is not None and row["leader_region"] != row["home_region"]
        region = str(row["leader_region"] or "-")
        table.add_row(
            str(row["shard_id"]),
            "[red]none[/red]" if leader is None else str(leader),
            f"[yellow]{region}[/yellow]" if away else region,
            str(row["home_region"]),
            *(
                "-" if row[k] is None else str(row[k])
                for k in ("term", "commit_index", "applied_index")
            ),
            str(row["log_lag_entries_max"]),
        )
    return table


def print_status(out: Console, status: ClusterStatus, *, per_shard: bool) -> None:
    out.print(regions_table(status))
    out.print(status_table(status))
    if per_shard:
        out.print(shards_table(status))
    anomalies = status.anomalies()
    if not anomalies:
        out.print("anomalies: none")
        return
    out.print(f"[red]anomalies ({len(anomalies)}):[/red]")
    for anomaly in anomalies:
        out.print(f"  [red]{anomaly.kind}[/red]: {anomaly.message}")


__all__ = ["META_GROUP_ID", "print_status", "regions_table", "shards_table", "status_table"]
