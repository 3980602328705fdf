"""cluster/prometheus/prometheus.yml and cluster/grafana/hongbao-dashboard.json against
configs/three-machines.toml and the metric names of the contract (hongbao.metrics)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from hongbao.config.topology import load_topology, parse_topology
from tests.deploy.manifests import containers, k8s_documents, k8s_topology

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "cluster" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "cluster" / "grafana" / "hongbao-dashboard.json"
THREE_MACHINES = REPO / "configs" / "three-machines.toml"

CONTRACT = frozenset({
    "hongbao_shard_role", "hongbao_shard_term", "hongbao_shard_commit_index",
    "hongbao_shard_applied_index", "hongbao_shard_apply_lag_entries",
    "hongbao_shard_follower_lag_entries", "hongbao_proposals_total",
    "hongbao_entries_applied_total", "hongbao_snapshot_sends_total",
    "hongbao_snapshot_installs_total", "hongbao_fsync_seconds", "hongbao_cycle_seconds",
    "hongbao_peer_reconnects_total", "hongbao_peer_sent_bytes_total",
    "hongbao_peer_received_bytes_total", "hongbao_region_state",
    "hongbao_router_requests_total", "hongbao_router_request_seconds",
    "hongbao_router_redirects_total", "hongbao_router_retries_total",
})  # fmt: skip
HISTOGRAMS = frozenset({"hongbao_fsync_seconds", "hongbao_cycle_seconds",
                        "hongbao_router_request_seconds"})  # fmt: skip
LABELS = frozenset({"shard", "role", "peer", "region", "state", "service", "method", "code",
                    "le", "job", "instance", "host_region", "node", "router"})  # fmt: skip


def jobs() -> dict[str, list[dict[str, Any]]]:
    config = yaml.safe_load(PROMETHEUS.read_text())
    return {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}


def test_the_scrape_targets_are_the_topologys_metrics_addresses() -> None:
    topology = load_topology(THREE_MACHINES)
    found = jobs()
    assert set(found) == {"hongbao-node", "hongbao-router"}
    nodes = {(t, c["labels"]["node"], c["labels"]["host_region"])
             for c in found["hongbao-node"] for t in c["targets"]}  # fmt: skip
    assert nodes == {(n.metrics_address, str(n.node_id), n.region) for n in topology.nodes}
    routers = {(t, c["labels"]["router"], c["labels"]["host_region"])
               for c in found["hongbao-router"] for t in c["targets"]}  # fmt: skip
    assert routers == {(r.metrics_address, str(r.router_id), r.region) for r in topology.routers}
    assert all(n.metrics_port for n in topology.nodes)
    assert all(r.metrics_port for r in topology.routers)


def exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = list(dashboard["panels"])
    for panel in list(panels):
        panels.extend(panel.get("panels", []))  # rows
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_every_dashboard_expr_names_only_contract_metrics_and_labels() -> None:
    found = exprs()
    assert found
    used: set[str] = set()
    for expr in found:
        names = set(re.findall(r"\bhongbao_\w+", expr))
        assert names, expr
        for name in names:
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if base in HISTOGRAMS:
                name = base
            assert name in CONTRACT, f"{name} in {expr}"
            used.add(name)
        for selector in re.findall(r"\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
                assert label in LABELS, f"label {label} in {expr}"
        for grouping in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            for label in grouping.split(","):
                assert label.strip() in LABELS, f"label {label} in {expr}"
    # The figures the dashboard exists for are all there.
    assert {"hongbao_shard_role", "hongbao_shard_apply_lag_entries",
            "hongbao_shard_follower_lag_entries", "hongbao_fsync_seconds",
            "hongbao_cycle_seconds", "hongbao_router_requests_total",
            "hongbao_router_request_seconds", "hongbao_region_state"} <= used  # fmt: skip


def test_kubernetes_pods_expose_the_topologys_metrics_ports() -> None:
    """The ConfigMap's topology names a metrics port for every process, and each pod
    template declares that port (named ``metrics``) and the scrape annotations."""
    topology = parse_topology(tomllib.loads(k8s_topology()))
    node_ports = {n.metrics_port for n in topology.nodes}
    router_ports = {r.metrics_port for r in topology.routers}
    assert None not in node_ports | router_ports
    seen: dict[str, set[int]] = {"node": set(), "router": set()}
    for _, document in k8s_documents():
        for container in containers(document):
            if container["name"] not in seen:
                continue
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            seen[container["name"]].add(ports["metrics"])
            annotations = document["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true"
            assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert seen == {"node": node_ports, "router": router_ports}
