"""The simulated demo: the story holds for many seeds and is the same for one seed."""

from __future__ import annotations

import pytest

from hongbao.sim.demo import CITIES, WRITES_PER_PHASE, run_demo


@pytest.mark.parametrize("seed", range(20))
def test_the_demo_story_completes_with_every_invariant_held(seed: int) -> None:
    report = run_demo(seed)
    assert report.ok, report.failure
    assert report.commits == 2 * WRITES_PER_PHASE
    texts = [step.text for step in report.steps]
    assert "elected leader" in texts[0]
    cut = next(i for i, text in enumerate(texts) if "cut off" in text)
    assert "elected leader" in texts[cut + 1]  # a new leader among the survivors
    assert any(city in texts[cut] for city in CITIES)
    assert "caught up" in texts[-1]


def test_the_demo_is_deterministic() -> None:
    assert run_demo(3) == run_demo(3)
    assert run_demo(3).steps != run_demo(4).steps
