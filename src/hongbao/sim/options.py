"""The user-facing options of a simulation, and the one command that replays a seed.

Why a separate record: the CLI exposes a handful of knobs (sizes, phase length, profile,
deliberate bugs); everything else comes from the profile. Keeping them together lets the
replay command name exactly the options that differ from the defaults, so a printed
command reproduces the failure it came with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hongbao.sim.config import SimConfig, bugs_from_names
from hongbao.sim.profiles import profile_config

DEFAULT_PROFILE = "default"


@dataclass(frozen=True, slots=True)
class RunOptions:
    node_count: int | None = None  # None: the profile's
    region_count: int | None = None
    safety_ticks: int | None = None
    profile: str = DEFAULT_PROFILE
    bugs: tuple[str, ...] = ()

    def to_config(self) -> SimConfig:
        config = profile_config(self.profile)
        node_count = _or(self.node_count, config.node_count)
        config = replace(
            config,
            node_count=node_count,
            region_count=_or(self.region_count, min(config.region_count, node_count)),
            safety_ticks=_or(self.safety_ticks, config.safety_ticks),
            bugs=bugs_from_names(self.bugs),
        )
        config.validate()
        return config

    def replay_command(self, seed: int) -> str:
        """``hongbao sim --seed S --trace`` plus every option that is not a default."""
        defaults = profile_config(self.profile)
        parts = ["hongbao", "sim", "--seed", str(seed), "--trace"]
        if self.profile != DEFAULT_PROFILE:
            parts += ["--profile", self.profile]
        for flag, value, default in (
            ("--nodes", self.node_count, defaults.node_count),
            ("--regions", self.region_count, defaults.region_count),
            ("--ticks", self.safety_ticks, defaults.safety_ticks),
        ):
            if value is not None and value != default:
                parts += [flag, str(value)]
        for bug in sorted(set(self.bugs)):
            parts += ["--bug", bug]
        return " ".join(parts)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
