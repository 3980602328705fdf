"""A PNG of a report page, rendered by headless Chromium (Debian's ``chromium`` package).

Why a browser and not matplotlib's own PNG: the note for an issue shows the page as a
reader sees it (tables, verdict, inlined SVG), so it has to be the real renderer. The
flags keep Chromium from reaching the network or a profile: a throwaway user data
directory, no sync, no component updates, no background networking.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Final

CHROMIUM: Final = "/usr/bin/chromium"  # Debian's package
WINDOW_SIZE: Final = "1400,2000"
TIMEOUT_S: Final = 60.0
STDERR_TAIL_CHARS: Final = 2000


def screenshot(
    html_path: Path,
    png_path: Path,
    *,
    chromium: str = CHROMIUM,
    window_size: str = WINDOW_SIZE,
    timeout_s: float = TIMEOUT_S,
) -> None:
    """Renders ``html_path`` into ``png_path``; RuntimeError says why when it could not."""
    page = Path(html_path).resolve()
    target = Path(png_path).resolve()
    if not page.is_file():
        raise FileNotFoundError(page)
    if not Path(chromium).exists():
        raise RuntimeError(f"no browser at {chromium} (Debian: apt-get install chromium)")
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="hongbao-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={target}",
            f"--window-size={window_size}",
            page.as_uri(),
        ]
        # Its own session, so that a timeout ends the browser's helper processes too.
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise RuntimeError(f"{chromium} took over {timeout_s:g} s to render {page}") from error
    if process.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
        tail = (stderr or "")[-STDERR_TAIL_CHARS:]
        raise RuntimeError(f"{chromium} exited {process.returncode}, no screenshot: {tail}")
