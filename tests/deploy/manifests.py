"""Read cluster/'s systemd units and Kubernetes manifests, and the hongbao command lines in
them, the way systemd, Kubernetes and ``sh -c`` would expand them.

Why a module of its own: the test must check every command line an operator's machines
will run, so it must find them all (ExecStart, ExecStop, container command and args,
preStop hooks) and expand them as the real thing does (``%i``, ``${VAR}`` and ``$VAR``
of systemd; ``$(VAR)`` of Kubernetes; ``"$VAR"`` and ``$((A + B))`` of ``sh -c``). A
command line it could not expand is reported, never skipped.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
SYSTEMD = CLUSTER / "systemd"
K8S = CLUSTER / "k8s"
HONGBAO = "hongbao"
EXEC_PREFIXES = "-@+!:"  # systemd's ExecStart= prefixes
EXEC_KEYS = ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop",
             "ExecStopPost")
# The instance each template unit is checked with: a node id and a region of
# configs/three-machines.toml.
UNIT_INSTANCES = {"hongbao-node@.service": "1", "hongbao-router@.service": "shenzhen"}
# Values for the downward API fields a manifest's env takes from the pod.
FIELD_SAMPLES = {"metadata.labels['apps.kubernetes.io/pod-index']": "0",
                 "status.podIP": "10.1.2.3", "metadata.name": "hongbao-node-sample-0"}


@dataclass(frozen=True, slots=True)
class CommandLine:
    """One hongbao invocation found in a file: its words after ``hongbao``."""

    source: str  # file and place, e.g. "systemd/hongbao-node@.service ExecStop"
    args: tuple[str, ...]
    topology: str  # which topology text its --config stands for

    def __str__(self) -> str:
        return f"{self.source}: hongbao {shlex.join(self.args)}"


# -- systemd -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    path: Path
    entries: tuple[tuple[str, str, str], ...]  # (section, key, value), in file order

    def values(self, section: str, key: str) -> list[str]:
        return [v for s, k, v in self.entries if s == section and k == key]

    def value(self, section: str, key: str) -> str | None:
        found = self.values(section, key)
        return found[-1] if found else None


def read_unit(path: Path) -> Unit:
    """A unit file's entries; repeated keys kept (ExecStop= twice is two commands)."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path.name}: not key=value: {line!r}")
        entries.append((section, key.strip(), value.strip()))
    return Unit(path, tuple(entries))


def unit_environment(unit: Unit) -> dict[str, str]:
    env: dict[str, str] = {}
    for assignment in unit.values("Service", "Environment"):
        for word in shlex.split(assignment):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def systemd_words(command: str, *, instance: str, env: Mapping[str, str]) -> list[str]:
    """Expand one Exec line as systemd does: specifiers, then ``${VAR}`` and ``$VAR``."""
    command = command.lstrip(EXEC_PREFIXES)
    command = command.replace("%i", instance).replace("%I", instance).replace("%%", "%")
    words: list[str] = []
    for word in shlex.split(command):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:  # an unbraced $VAR alone is split into words; unset: none
            if whole.group(1) == "MAINPID":
                words.append("12345")
                continue
            words.extend(env.get(whole.group(1), "").split())
            continue
        words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                            lambda m: _lookup(env, m.group(1)), word))
    return words


def systemd_command_lines(topology: str) -> Iterator[CommandLine]:
    for path in sorted(SYSTEMD.glob("*.service")):
        unit = read_unit(path)
        instance = UNIT_INSTANCES[path.name]
        env = unit_environment(unit)
        for key in EXEC_KEYS:
            for number, command in enumerate(unit.values("Service", key), start=1):
                words = systemd_words(command, instance=instance, env=env)
                if Path(words[0]).name == HONGBAO:
                    source = f"systemd/{path.name} {key}#{number} (instance {instance})"
                    yield CommandLine(source, tuple(words[1:]), topology)


# -- Kubernetes ----------------------------------------------------------------------------


def k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                yield path.name, document


def containers(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec", {}).get("template", {}).get("spec", {})
    found: list[dict[str, Any]] = spec.get("containers", []) + spec.get("initContainers", [])
    return found


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            field = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = FIELD_SAMPLES[field]
    return env


def k8s_words(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """A container's argv as run: Kubernetes' ``$(VAR)``, then ``sh -c`` if it is one."""
    argv = [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: _lookup(env, m.group(1)), a)
            for a in argv]
    if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c":
        return shell_words(argv[2], env)
    return argv


def shell_words(script: str, env: Mapping[str, str]) -> list[str]:
    """Enough of ``sh``: one simple command, ``exec``, ``$((A + B))``, ``"$VAR"``."""
    if any(token in script for token in (";", "&&", "||", "|", "`", "\n")):
        raise ValueError(f"not one simple command: {script!r}")

    def arithmetic(match: re.Match[str]) -> str:
        terms = [t.strip() for t in match.group(1).split("+")]
        return str(sum(int(_lookup(env, t)) if not t.isdigit() else int(t) for t in terms))

    script = re.sub(r"\$\(\(([^()]*)\)\)", arithmetic, script)
    if "$(" in script:
        raise ValueError(f"command substitution in a hongbao command line: {script!r}")
    script = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: _lookup(env, m.group(1)),
                    script)
    words = shlex.split(script)
    return words[1:] if words and words[0] == "exec" else words


def k8s_topology() -> str:
    for _, document in k8s_documents():
        if document.get("kind") == "ConfigMap" and "topology.toml" in document.get("data", {}):
            text: str = document["data"]["topology.toml"]
            return text
    raise AssertionError("no ConfigMap with topology.toml in cluster/k8s")


def k8s_command_lines() -> Iterator[CommandLine]:
    topology = k8s_topology()
    for file_name, document in k8s_documents():
        name = f"{document['kind']}/{document['metadata']['name']}"
        for container in containers(document):
            env = container_env(container)
            argv = [*container.get("command", []), *container.get("args", [])]
            places = [("command", argv)]
            pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec")
            if pre_stop is not None:
                places.append(("preStop", list(pre_stop["command"])))
            for place, words in places:
                if not words:
                    continue
                expanded = k8s_words([str(w) for w in words], env)
                if Path(expanded[0]).name == HONGBAO:
                    source = f"k8s/{file_name} {name} {container['name']} {place}"
                    yield CommandLine(source, tuple(expanded[1:]), topology)


def probes(container: Mapping[str, Any]) -> Iterator[tuple[str, list[str]]]:
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = container.get(kind)
        if probe is not None:
            yield kind, [str(w) for w in probe["exec"]["command"]]


def _lookup(env: Mapping[str, str], name: str) -> str:
    if name not in env:
        raise KeyError(f"${name} is not set (no Environment=/env entry defines it)")
    return env[name]


# -- cluster/README.md ---------------------------------------------------------------------


def readme_command_lines() -> Iterator[CommandLine]:
    """``hongbao ...`` lines of the README's sh code blocks (run from the workstation)."""
    in_block = False
    for number, line in enumerate((CLUSTER / "README.md").read_text().splitlines(), 1):
        if line.startswith("```"):
            in_block = line.strip() == "```sh" and not in_block
            continue
        words = shlex.split(line, comments=True) if in_block else []
        if words and words[0] == HONGBAO:
            yield CommandLine(f"README.md:{number}", tuple(words[1:]), "")
