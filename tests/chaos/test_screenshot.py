"""``hongbao chaos screenshot``: a report page rendered by headless Chromium (Debian's
``chromium``, which ``.ci/run`` installs) into the PNG a note attaches. The page of a
failing run must come out as a picture of that page (its red FAILED badge among its
pixels), at the window's size; a directory with no report page and a missing browser
are usage errors with a message, not tracebacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from matplotlib import image

from hongbao.chaos.report import write_reports
from hongbao.chaos.screenshot import WINDOW_SIZE
from hongbao.cli.chaos import chaos
from tests.chaos.test_report import scenario

FAIL_RED = np.array([0xD6, 0x28, 0x28]) / 255  # report_html's .fail background
RED_PIXELS_MIN = 200  # the FAILED badge alone is thousands of pixels at 1400 wide


def test_a_failing_run_s_page_is_rendered_with_its_red_verdict(tmp_path: Path) -> None:
    write_reports(tmp_path, *scenario())
    png = tmp_path / "shot.png"
    result = CliRunner().invoke(chaos, ["screenshot", str(tmp_path), "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert f"wrote {png}" in result.output
    pixels = image.imread(png)[:, :, :3]
    width, height = (int(n) for n in WINDOW_SIZE.split(","))
    assert pixels.shape[:2] == (height, width)
    red = np.all(np.abs(pixels - FAIL_RED) < 0.02, axis=2).sum()
    assert red >= RED_PIXELS_MIN, f"only {red} pixels of the FAILED badge's red"


def test_a_directory_without_a_report_page_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(chaos, ["screenshot", str(tmp_path)])
    assert result.exit_code == 2
    assert "no report.html" in result.output
    assert not (tmp_path / "report.png").exists()


def test_a_missing_browser_is_named(tmp_path: Path) -> None:
    write_reports(tmp_path, *scenario())
    missing = tmp_path / "no-such-chromium"
    result = CliRunner().invoke(chaos, ["screenshot", str(tmp_path), "--chromium", str(missing)])
    assert result.exit_code == 1
    assert f"no browser at {missing}" in result.output
