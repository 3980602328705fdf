"""cluster/: every manifest and unit parses, has what an operator relies on, and every
hongbao command line in it is accepted by the real CLI.

The CLI check builds click's contexts down the command tree without running anything
(``make_context`` parses and converts every option, so an unknown command, an unknown
option, a missing required one or a bad value fails here, naming the file and place).
Absolute paths in the command lines (``/etc/hongbao/topology.toml``, the certs and data
dirs) are mapped into a temporary root holding the topology the file goes with, so that
click's existence checks see what the machine would.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from hongbao.config.topology import Topology, load_topology
from tests.deploy import manifests as m
from tests.deploy.manifests import CommandLine

THREE_MACHINES = m.REPO / "configs" / "three-machines.toml"
PATH_OPTIONS_FILE = {"--config", "--ready-file"}
COMMAND_LINES: list[CommandLine] = [
    *m.systemd_command_lines(THREE_MACHINES.read_text()),
    *m.k8s_command_lines(),
]
README_LINES = list(m.readme_command_lines())
REQUIRED_COMMANDS = {  # what the units and manifests must run, at least
    ("node", "run"), ("node", "drain"), ("router", "run"),
}


def _root_cli() -> click.Group:
    from hongbao.cli import main

    if not main.cli.commands:
        main._register()
    return main.cli


def _leaf(args: list[str]) -> tuple[click.Command, click.Context, list[str], list[str]]:
    """Walk ``args`` down the command groups: (leaf command, parent context, the leaf's
    own arguments, the command path)."""
    group = _root_cli()
    context = click.Context(group, info_name="hongbao")
    path = ["hongbao"]
    command: click.Command = group
    rest = list(args)
    while isinstance(command, click.Group):
        if not rest or rest[0].startswith("-"):
            raise click.UsageError(f"`{' '.join(path)}` needs a subcommand")
        name, rest = rest[0], rest[1:]
        found = command.get_command(context, name)
        if found is None:
            known = ", ".join(sorted(command.list_commands(context)))
            raise click.UsageError(
                f"no command `{' '.join([*path, name])}` (not written yet? `{' '.join(path)}`"
                f" has: {known})"
            )
        path.append(name)
        if isinstance(found, click.Group):
            context = click.Context(found, info_name=name, parent=context)
        command = found
    return command, context, rest, path


def _materialise(args: tuple[str, ...], topology: str, root: Path) -> list[str]:
    """The args with each absolute path moved under ``root`` and created there."""
    out: list[str] = []
    for previous, arg in zip(("", *args), args, strict=False):
        if arg.startswith("/"):
            local = root / arg.lstrip("/")
            if previous in PATH_OPTIONS_FILE:
                local.parent.mkdir(parents=True, exist_ok=True)
                if previous == "--config":
                    local.write_text(topology)
            else:
                local.mkdir(parents=True, exist_ok=True)
            arg = str(local)
        out.append(arg)
    return out


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args[:-1]):
        if arg == name:
            return args[i + 1]
    return None


def test_every_place_that_runs_hongbao_was_found() -> None:
    sources = "\n".join(str(c) for c in COMMAND_LINES)
    found = {tuple(c.args[:2]) for c in COMMAND_LINES}
    assert found >= REQUIRED_COMMANDS, sources
    assert any("ExecStop" in c.source and c.args[:2] == ("node", "drain")
               for c in COMMAND_LINES), sources
    assert any("preStop" in c.source for c in COMMAND_LINES), sources
    assert len(COMMAND_LINES) >= 2 + 3 * 3, sources  # 2 units' + 3 regions x 3 lines


def _accepted(line: CommandLine, args: list[str]) -> None:
    # Parsing runs option callbacks, and --certs-dir's sets $HONGBAO_CERTS_DIR for the
    # processes a command starts: put the environment back, or later tests inherit it.
    saved = dict(os.environ)
    try:
        command, parent, rest, path = _leaf(args)
        command.make_context(path[-1], rest, parent=parent)  # parses; runs nothing
    except click.ClickException as refused:
        pytest.fail(f"{line}\nrefused by the CLI: {refused.format_message()}")
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize("line", COMMAND_LINES, ids=lambda c: c.source)
def test_command_line_is_accepted_by_the_cli(line: CommandLine, tmp_path: Path) -> None:
    args = _materialise(line.args, line.topology, tmp_path)
    _accepted(line, args)
    # What the CLI checks only when it runs: the node and region must exist.
    config = _option(args, "--config")
    assert config is not None, f"{line}: no --config"
    _exists_in(line, args, load_topology(Path(config)))
    assert "--insecure" not in args, f"{line}: deployments run with TLS"


@pytest.mark.parametrize("line", README_LINES, ids=lambda c: c.source)
def test_readme_command_is_accepted_by_the_cli(
    line: CommandLine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's commands run from the workstation's ~/hongbao: topology.toml and
    certs/ there (and k8s-topology.toml for the Kubernetes section)."""
    (tmp_path / "topology.toml").write_text(THREE_MACHINES.read_text())
    (tmp_path / "k8s-topology.toml").write_text(m.k8s_topology())
    (tmp_path / "certs").mkdir()
    monkeypatch.chdir(tmp_path)
    args = list(line.args)
    _accepted(line, args)
    config = _option(args, "--config")
    if config is not None:
        _exists_in(line, args, load_topology(Path(config)))


def test_the_readme_shows_the_operations() -> None:
    shown = {tuple(line.args[:2]) for line in README_LINES}
    for command in (("certs", "init"), ("cluster", "status"), ("region", "drain"),
                    ("region", "undrain"), ("cluster", "balance"), ("audit", "--config")):
        assert command in shown, f"README.md shows no `hongbao {' '.join(command)}`"


def _exists_in(line: CommandLine, args: list[str], topology: Topology) -> None:
    node = _option(args, "--node")
    if node is not None:
        assert int(node) in {int(n.node_id) for n in topology.nodes}, f"{line}: no node {node}"
    region = _option(args, "--region")
    if region is not None:
        assert region in {r.name for r in topology.regions}, f"{line}: no region {region}"
        router_id = _option(args, "--router-id")
        if router_id is not None:
            assert topology.router_spec(int(router_id)).region == region, str(line)
    if args[:1] == ["region"] and len(args) > 2 and not args[2].startswith("-"):
        # `region drain NAME` and its siblings take the region as an argument.
        assert args[2] in {r.name for r in topology.regions}, f"{line}: no region {args[2]}"


# -- systemd -------------------------------------------------------------------------------


def test_node_unit_drains_before_it_stops() -> None:
    unit = m.read_unit(m.SYSTEMD / "hongbao-node@.service")
    service = "Service"
    stops = unit.values(service, "ExecStop")
    assert len(stops) == 2
    assert "node drain" in stops[0], stops
    assert stops[0].startswith("-"), "a drain past its deadline must not stop the stop"
    assert "kill -s TERM $MAINPID" in stops[1], stops
    assert unit.value(service, "Restart") == "on-failure"
    assert unit.value(service, "User") == "hongbao"
    assert int(unit.value(service, "LimitNOFILE") or 0) >= 65536
    assert unit.value(service, "StateDirectory") == "hongbao/node-%i"
    start = unit.value(service, "ExecStart") or ""
    assert "--data-dir /var/lib/hongbao/node-%i" in start
    deadline_s = float(m.unit_environment(unit)["DRAIN_DEADLINE_S"])
    assert float(unit.value(service, "TimeoutStopSec") or 0) > deadline_s, (
        "systemd would SIGKILL the node before its drain's deadline")


def test_router_unit_runs_its_region() -> None:
    unit = m.read_unit(m.SYSTEMD / "hongbao-router@.service")
    start = unit.value("Service", "ExecStart") or ""
    assert "router run" in start
    assert "--region %i" in start
    assert unit.value("Service", "Restart") == "on-failure"
    assert unit.value("Service", "User") == "hongbao"
    assert int(unit.value("Service", "LimitNOFILE") or 0) >= 65536


def test_units_pass_systemd_analyze_when_available(tmp_path: Path) -> None:
    """``systemd-analyze verify`` where it exists (not in every container): it knows every
    directive, so a misspelt one fails here rather than on the operator's machine."""
    analyze = Path("/usr/bin/systemd-analyze")
    if not analyze.exists():
        pytest.skip("systemd-analyze is not installed")
    for unit in sorted(m.SYSTEMD.glob("*.service")):
        instance = unit.name.replace("@", "@" + m.UNIT_INSTANCES[unit.name])
        (tmp_path / instance).write_text(unit.read_text())
        result = subprocess.run(
            [str(analyze), "verify", "--man=no", str(tmp_path / instance)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        unknown = [line for line in result.stderr.splitlines()
                   if "Unknown key" in line or "Unknown section" in line
                   or "Invalid" in line or "Failed to parse" in line]
        assert unknown == [], f"{unit.name}:\n{result.stderr}"


# -- Kubernetes ----------------------------------------------------------------------------


def _documents(kind: str) -> Iterator[dict[str, Any]]:
    for _, document in m.k8s_documents():
        if document.get("kind") == kind:
            yield document


def test_every_document_is_a_named_kubernetes_object() -> None:
    documents = list(m.k8s_documents())
    assert len(documents) >= 4 + 3 * 3  # common.yaml + three regions' three objects
    for file_name, document in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(document), file_name
        assert document["metadata"].get("name"), file_name


def test_the_topology_of_the_configmap_loads_with_one_statefulset_per_region(
    tmp_path: Path,
) -> None:
    path = tmp_path / "topology.toml"
    path.write_text(m.k8s_topology())
    topology = load_topology(path)
    assert topology.tls is True
    statefulsets = {d["metadata"]["labels"]["hongbao.io/region"]: d
                    for d in _documents("StatefulSet")}
    assert sorted(statefulsets) == sorted(r.name for r in topology.regions)
    for region, document in statefulsets.items():
        spec = document["spec"]
        assert spec["serviceName"] == "hongbao-nodes"
        assert spec["replicas"] == len(topology.nodes_in(region))
        (container,) = m.containers(document)
        base = int(m.container_env(container)["NODE_ID_BASE"])
        ids = sorted(int(n.node_id) for n in topology.nodes_in(region))
        assert ids == list(range(base, base + len(ids))), (
            f"{region}: pod index i runs node {base} + i, so its node ids must be "
            f"consecutive from {base}: {ids}")
        for node in topology.nodes_in(region):
            index = int(node.node_id) - base
            pod = f"hongbao-node-{region}-{index}.hongbao-nodes.hongbao.svc.cluster.local"
            assert node.host == pod, f"node {node.node_id}'s host must be its pod's name"
    deployments = {d["metadata"]["labels"]["hongbao.io/region"]
                   for d in _documents("Deployment")}
    assert deployments == {r.name for r in topology.regions}
    for spec in topology.routers:
        service = f"hongbao-router-{spec.region}.hongbao.svc.cluster.local"
        assert spec.host == service


def test_headless_service_and_disruption_budget() -> None:
    (headless,) = [s for s in _documents("Service")
                   if s["spec"].get("clusterIP") == "None"]
    assert headless["spec"]["publishNotReadyAddresses"] is True
    (budget,) = list(_documents("PodDisruptionBudget"))
    assert budget["spec"]["maxUnavailable"] == 1
    labels = budget["spec"]["selector"]["matchLabels"]
    assert labels == headless["spec"]["selector"]
    routers = {s["metadata"]["name"] for s in _documents("Service")
               if s["metadata"]["name"].startswith("hongbao-router-")}
    assert len(routers) == 3


def test_node_pods_drain_in_prestop_and_are_ready_only_while_serving_wallets() -> None:
    for document in _documents("StatefulSet"):
        (container,) = m.containers(document)
        pre_stop = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
        assert "hongbao node drain" in pre_stop
        deadline_s = float(shlex.split(pre_stop.split("--deadline-s", 1)[1])[0])
        grace_s = document["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"]
        assert grace_s > deadline_s, "Kubernetes would kill the pod before the drain ends"
        probes = dict(m.probes(container))
        assert "-service=hongbao.v1.Wallet" in " ".join(probes["readinessProbe"])
        assert "grpc_health_probe" in " ".join(probes["livenessProbe"])
        assert "-tls" in " ".join(probes["readinessProbe"])


def test_region_files_are_the_rendered_template() -> None:
    template = (m.K8S / "region.yaml.in").read_text()
    calls = [line.split()[1:] for line in (m.K8S / "render.sh").read_text().splitlines()
             if line.startswith("render ")]
    assert len(calls) == 3
    for region, base, router_id in calls:
        expected = (template.replace("@REGION@", region).replace("@NODE_ID_BASE@", base)
                    .replace("@ROUTER_ID@", router_id))
        assert (m.K8S / f"region-{region}.yaml").read_text() == expected, (
            f"region-{region}.yaml differs from region.yaml.in: run cluster/k8s/render.sh")


def test_kustomization_lists_every_manifest() -> None:
    import yaml

    listed = yaml.safe_load((m.K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(p.name for p in m.K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk


def test_three_machines_topology_loads() -> None:
    topology = load_topology(THREE_MACHINES)
    assert topology.tls is True
    assert len({n.host for n in topology.nodes}) == 3
    assert [r.region for r in topology.routers] == [r.name for r in topology.regions]
    assert tomllib.loads(THREE_MACHINES.read_text())["tls"] is True
