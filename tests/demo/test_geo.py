"""``hongbao demo --geo``: the latency file, the measurements, a whole run and its clean-up.

Real processes on 127.0.0.1 for the run tests; every wait has a deadline, and every
process and proxy started here is gone at the end (asserted, Ctrl-C included).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from hongbao.cli.demo import demo
from hongbao.config.topology import load_topology
from hongbao.demo.geo import GeoLatency, LatencyFileError, load_latency_file
from hongbao.demo.geo_measure import nearest_quorum_ms, percentile
from hongbao.demo.geo_story import GeoDemoResult, geo_network
from hongbao.demo.live import run_live_demo
from hongbao.ops.local import wait_until

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "configs" / "local.toml"
LATENCY_FILE = REPO / "configs" / "geo-latency.toml"
REGIONS = ("shenzhen", "shanghai", "tianjin")
RUN_TIMEOUT_S = 120.0
INTERRUPT_TIMEOUT_S = 30.0


def geo_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "geo.toml"
    path.write_text(text)
    return path


def full_matrix(**overrides: int) -> str:
    """A latency file of every direction, 10 ms each unless ``FROM_TO=ms`` says otherwise."""
    lines = ["jitter_ms = 0"]
    for source in REGIONS:
        lines.append(f"[one_way_ms.{source}]")
        for target in REGIONS:
            if target != source:
                lines.append(f"{target} = {overrides.get(f'{source}_{target}', 10)}")
    return "\n".join(lines) + "\n"


def without_jitter() -> GeoLatency:
    """The shipped matrix with no jitter: every delay is then a floor, exactly."""
    return replace(load_latency_file(LATENCY_FILE, REGIONS), jitter_ms=0)


# -- the latency file ----------------------------------------------------------------------


def test_the_shipped_file_loads_every_direction() -> None:
    latency = load_latency_file(LATENCY_FILE, REGIONS)
    assert latency.one_way_ms == {
        ("shenzhen", "shanghai"): 15, ("shenzhen", "tianjin"): 25,
        ("shanghai", "shenzhen"): 15, ("shanghai", "tianjin"): 12,
        ("tianjin", "shenzhen"): 25, ("tianjin", "shanghai"): 12,
    }  # fmt: skip
    assert latency.jitter_ms == 1
    assert latency.round_trip_ms("shenzhen", "tianjin") == 50
    assert latency.round_trip_ms("shanghai", "shanghai") == 0
    assert latency.regions == REGIONS


def test_directions_are_separate_entries(tmp_path: Path) -> None:
    path = geo_file(tmp_path, full_matrix(shenzhen_shanghai=15, shanghai_shenzhen=40))
    latency = load_latency_file(path, REGIONS)
    assert latency.one_way_ms[("shenzhen", "shanghai")] == 15
    assert latency.one_way_ms[("shanghai", "shenzhen")] == 40
    assert latency.round_trip_ms("shanghai", "shenzhen") == 55


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (full_matrix() + "[one_way_ms.chongqing]\nshenzhen = 20\n",
         "one_way_ms.chongqing: unknown region 'chongqing' (the topology has shenzhen, "
         "shanghai, tianjin)"),
        (full_matrix().replace("tianjin = 10", "chengdu = 10", 1),
         "one_way_ms.shenzhen.chengdu: unknown region 'chengdu'"),
        (full_matrix(shanghai_tianjin=-1), "one_way_ms.shanghai.tianjin: -1 ms is outside 0..1000"),
        (full_matrix(shanghai_tianjin=5000), "5000 ms is outside 0..1000"),
        (full_matrix().replace("tianjin = 10", "tianjin = 12.5", 1),
         "one_way_ms.shenzhen.tianjin: expected whole milliseconds, got 12.5"),
        (full_matrix().replace("tianjin = 10", "tianjin = true", 1), "expected whole milliseconds"),
        (full_matrix().replace("[one_way_ms.tianjin]\nshenzhen = 10\n", "[one_way_ms.tianjin]\n"),
         "missing direction(s) tianjin->shenzhen"),
        (full_matrix() + "[one_way_ms.shenzhen.x]\n", "one_way_ms.shenzhen.x: unknown region"),
        (full_matrix().replace("[one_way_ms.shanghai]\n", "[one_way_ms.shanghai]\nshanghai = 1\n"),
         "one_way_ms.shanghai.shanghai: a region to itself"),
        (full_matrix().replace("jitter_ms = 0", "jitter_ms = -2"), "jitter_ms: -2 ms is outside"),
        ("jitter = 1\n" + full_matrix(), "unknown key(s) jitter"),
        ("jitter_ms = 1\n", "expected tables [one_way_ms.FROM]"),
        ("one_way_ms = [", "not TOML"),
    ],
)  # fmt: skip
def test_the_loader_is_strict(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(LatencyFileError) as caught:
        load_latency_file(geo_file(tmp_path, text), REGIONS)
    assert fragment in str(caught.value)
    assert str(tmp_path / "geo.toml") in str(caught.value)


def test_an_absent_or_huge_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LatencyFileError, match="No such file"):
        load_latency_file(tmp_path / "absent.toml", REGIONS)
    with pytest.raises(LatencyFileError, match="over 65536 bytes"):
        load_latency_file(geo_file(tmp_path, "#" * 70_000), REGIONS)


def test_the_cli_refuses_bad_combinations_before_starting_anything(tmp_path: Path) -> None:
    runner = CliRunner()
    alone = runner.invoke(demo, ["--latency-file", str(LATENCY_FILE)])
    assert alone.exit_code == 2
    assert "--latency-file is for --geo" in alone.output
    simulated = runner.invoke(demo, ["--geo", "--simulated"])
    assert simulated.exit_code == 2
    assert "does not go with --simulated" in simulated.output
    bad = geo_file(tmp_path, full_matrix(tianjin_shanghai=-3))
    wrong = runner.invoke(demo, ["--geo", "--latency-file", str(bad), "--config", str(TEMPLATE)])
    assert wrong.exit_code == 2
    assert "one_way_ms.tianjin.shanghai: -3 ms is outside" in wrong.output


# -- what is computed from the matrix ---------------------------------------------------


def test_the_nearest_quorum_of_each_city() -> None:
    """3 replicas, one per city: a leader needs one other city's answer, the nearest."""
    topology = load_topology(TEMPLATE)
    latency = load_latency_file(LATENCY_FILE, REGIONS)
    by_region = {r: nearest_quorum_ms(topology, r, latency.round_trip_ms) for r in REGIONS}
    assert by_region == {
        "shenzhen": (30, "shanghai"), "shanghai": (24, "tianjin"), "tianjin": (24, "shanghai"),
    }  # fmt: skip


def test_percentiles_are_measured_values() -> None:
    samples = [float(v) for v in range(1, 101)]
    assert (percentile(samples, 50), percentile(samples, 99), percentile(samples, 100)) == (
        50.0, 99.0, 100.0,
    )  # fmt: skip
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


# -- the proxies and the whole run --------------------------------------------------------


def refuses(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return False
    except OSError:
        return True


def test_the_proxies_are_gone_after_the_network_closes(tmp_path: Path) -> None:
    topology = load_topology(TEMPLATE)
    with geo_network(topology, without_jitter(), tmp_path, toxiproxy="embedded") as geo:
        links = geo.net.links
        assert len(links) == 3 * 2 + 3 * 3  # node to node, router to node
        assert not any(refuses(link.listen) for link in links)
        assert sorted(geo.args_of_node) == [1, 2, 3]
        assert geo.args_of_router[2] == ["--dial-map", str(tmp_path / "dial-r2.json")]
    assert all(refuses(link.listen) for link in links)


def test_a_geo_run_measures_the_matrix_and_pays_the_quorum_round_trip() -> None:
    """The whole demo with the shipped figures (jitter off): every round trip measured
    through the proxies is at least both directions' sum, and every write waits at least
    the round trip to its leader's nearest quorum; the story and its audits still pass."""
    latency = without_jitter()
    lines: list[str] = []
    result = run_live_demo(TEMPLATE, lines.append, latency=latency, toxiproxy="embedded")
    assert isinstance(result, GeoDemoResult)
    assert result.ok, "\n".join(lines)
    matrix = result.matrix
    assert matrix is not None
    for source in REGIONS:
        for target in REGIONS:
            configured = latency.round_trip_ms(source, target)
            assert matrix.measured_ms(source, target) >= configured, (source, target)
            assert matrix.cell(source, target).configured_ms == configured
    assert [c.region for c in result.commits] == list(REGIONS)
    for commits in result.commits:
        assert commits.quorum_rtt_configured_ms == {"shenzhen": 30, "shanghai": 24,
                                                    "tianjin": 24}[commits.region]  # fmt: skip
        assert min(commits.samples_ms) >= commits.quorum_rtt_configured_ms, commits
        assert len(commits.samples_ms) == 40
        assert len(commits.baseline_ms) == 20
    text = "\n".join(lines)
    assert "from \\ to" in text
    assert "round trip to the nearest quorum (shanghai) 30 ms configured" in text
    assert "conservation audit passed" in text


# -- Ctrl-C ----------------------------------------------------------------------------------


def session_processes(session_id: int) -> set[int]:
    """Live processes of a session (zombies excluded), from /proc."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == session_id:
            found.add(int(entry))
    return found


def test_ctrl_c_stops_every_process_and_proxy() -> None:
    """Ctrl-C (SIGINT to the whole foreground group) once latency is on, while the matrix
    is measured: exit 130, and nothing of the demo is left running."""
    child = subprocess.Popen(
        [sys.executable, "-m", "hongbao.cli", "demo", "--geo"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert child.stdout is not None
    stdout = child.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not any("now the cities move apart" in line for line in seen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no latency before the deadline:\n" + "".join(seen)
            try:
                seen.append(lines.get(timeout=remaining))
            except queue.Empty:
                continue
        running = session_processes(child.pid)
        assert len(running) >= 7, running  # the demo, 3 nodes, 3 routers
        os.killpg(child.pid, signal.SIGINT)
        returncode = child.wait(INTERRUPT_TIMEOUT_S)
        reader.join(INTERRUPT_TIMEOUT_S)
        while not lines.empty():
            seen.append(lines.get_nowait())
        assert returncode == 130, "".join(seen[-20:])
        assert "interrupted: the nodes, routers and proxies were stopped" in "".join(seen)
        wait_until(lambda: not session_processes(child.pid), INTERRUPT_TIMEOUT_S,
                   "every process of the demo to end")  # fmt: skip
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(INTERRUPT_TIMEOUT_S)
        for pid in session_processes(child.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reader.join(INTERRUPT_TIMEOUT_S)
        stdout.close()
