"""``hongbao sim`` and ``hongbao demo`` through click's CliRunner: exit codes and output."""

from __future__ import annotations

import json
import shlex

import click
import pytest
from click.testing import CliRunner, Result

from hongbao.cli.commands import register

JSON_KEYS = {
    "seeds",
    "violations",
    "elections",
    "commits",
    "reads",
    "transfers",
    "membership_changes",
    "snapshots",
    "max_ticks_to_recover",
    "seeds_per_second",
}


@pytest.fixture
def hongbao() -> click.Group:
    group = click.Group("hongbao")
    register(group)
    return group


def invoke(group: click.Group, args: list[str]) -> Result:
    return CliRunner().invoke(group, args, catch_exceptions=False)


def last_json(output: str) -> dict[str, object]:
    summary = json.loads(output.strip().splitlines()[-1])
    assert isinstance(summary, dict)
    return summary


def test_a_passing_batch_exits_zero_with_every_json_key(hongbao: click.Group) -> None:
    result = invoke(hongbao, ["sim", "--seeds", "6", "--start", "100", "--json"])
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    assert set(summary) >= JSON_KEYS
    assert summary["seeds"] == 6
    assert summary["violations"] == 0
    assert summary["commits"]
    assert summary["elections"]
    assert summary["seeds_per_second"]


def test_the_summary_table_is_printed_without_json(hongbao: click.Group) -> None:
    result = invoke(hongbao, ["sim", "--seeds", "2", "--nodes", "3", "--ticks", "100"])
    assert result.exit_code == 0, result.output
    assert "violations" in result.stdout
    assert "seeds per second" in result.stdout


def test_a_violation_exits_non_zero_and_prints_a_replay_that_reproduces_it(
    hongbao: click.Group,
) -> None:
    args = ["sim", "--seeds", "30", "--nodes", "4", "--ticks", "250",
            "--bug", "vote_without_log_check", "--json"]
    result = invoke(hongbao, args)
    assert result.exit_code == 1
    summary = last_json(result.stdout)
    assert isinstance(summary["violations"], int)
    assert summary["violations"] > 0
    replays = summary["replay_commands"]
    assert isinstance(replays, list)
    assert replays
    replay = replays[0]
    assert isinstance(replay, str)
    for option in ("--nodes 4", "--ticks 250", "--bug vote_without_log_check", "--trace"):
        assert option in replay
    assert f"replay: {replay}" in result.stdout  # printed for humans too
    seed = summary["failing_seeds"][0]  # type: ignore[index]
    fail_line = next(line for line in result.stdout.splitlines() if line.startswith("FAIL"))
    argv = shlex.split(replay)
    assert argv[:2] == ["hongbao", "sim"]
    replayed = invoke(hongbao, argv[1:])
    assert replayed.exit_code == 1
    assert " sim violation " in replayed.stdout
    assert fail_line in replayed.stdout  # the same seed, tick, kind and detail
    assert f"seed {seed} " in fail_line


def test_the_trace_has_one_event_per_line(hongbao: click.Group) -> None:
    result = invoke(hongbao, ["sim", "--seed", "4", "--trace"])
    assert result.exit_code == 0, result.output
    events = [line for line in result.stdout.splitlines() if line.startswith("t0")]
    assert len(events) > 100
    assert events[0].startswith("t000000 sim start seed=4")
    assert all(len(line.split(" ")) >= 3 for line in events)
    assert any(" fault " in line for line in events)
    assert any(" leader term=" in line for line in events)
    assert events[-1].endswith("sim end ok=1")


def test_the_same_seed_prints_the_same_trace(hongbao: click.Group) -> None:
    first = invoke(hongbao, ["sim", "--seed", "9", "--trace"]).stdout
    second = invoke(hongbao, ["sim", "--seed", "9", "--trace"]).stdout
    trace = [line for line in first.splitlines() if line.startswith("t0")]
    assert trace == [line for line in second.splitlines() if line.startswith("t0")]


@pytest.mark.parametrize(
    "args",
    [
        ["sim", "--trace", "--seeds", "2"],
        ["sim", "--seed", "1", "--seeds", "2"],
        ["sim", "--seeds", "2", "--bug", "no_such_bug"],
        ["sim", "--seeds", "2", "--nodes", "2", "--regions", "3"],
    ],
)
def test_bad_options_are_usage_errors(hongbao: click.Group, args: list[str]) -> None:
    result = invoke(hongbao, args)
    assert result.exit_code == 2, result.output


def test_the_bug_and_profile_options_are_hidden(hongbao: click.Group) -> None:
    result = invoke(hongbao, ["sim", "--help"])
    assert result.exit_code == 0
    assert "--seeds" in result.stdout
    assert "--bug" not in result.stdout
    assert "--profile" not in result.stdout


def test_the_simulated_demo_tells_the_story_and_ends_with_the_invariants(
    hongbao: click.Group,
) -> None:
    result = invoke(hongbao, ["demo", "--simulated"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    story = "\n".join(lines)
    for city in ("shenzhen", "shanghai", "tianjin"):
        assert city in story
    assert "cut off" in story
    assert "healed" in story
    assert "invariants held" in lines[-1]
    again = invoke(hongbao, ["demo", "--simulated"])
    assert again.stdout == result.stdout  # deterministic for a seed
    other = invoke(hongbao, ["demo", "--simulated", "--seed", "5"])
    assert other.exit_code == 0
    assert other.stdout != result.stdout
