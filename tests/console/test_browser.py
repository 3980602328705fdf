"""The console in a real browser: headless Chromium (Debian's package) driven by
Playwright loads the page, sees three regions and every shard's leader, drains a region
from the page through the confirmation dialog, and then sees no leader there; the page
logs no console error on the way."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright

from hongbao.ops.local import stop_process, wait_until
from tests.console.conftest import Running

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
START_TIMEOUT_S = 30.0
UI_TIMEOUT_MS = 30_000
DRAIN_TIMEOUT_MS = 60_000
DRAINED = "tianjin"


@contextlib.contextmanager
def console_process(live: Running, root: Path) -> Iterator[str]:
    """``hongbao console`` on a free 127.0.0.1 port; yields its URL; stopped on exit."""
    out, log = root / "console.out", root / "console.log"
    command = [
        sys.executable, "-m", "hongbao.cli.console", "--config", str(live.config_path),
        "--data-dir", str(live.cluster.data_dir), "--port", "0", "--interval-s", "0.3",
        "--insecure",
    ]  # fmt: skip
    with out.open("wb") as stdout, log.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    try:
        wait_until(lambda: b"\n" in out.read_bytes() or process.poll() is not None,
                   START_TIMEOUT_S, "the console to print its URL")  # fmt: skip
        assert process.poll() is None, log.read_text()
        yield out.read_text().splitlines()[0].strip()
    finally:
        stop_process(process)


def _shard_rows(page: Page, count: int) -> None:
    """Wait until the shards table has ``count`` rows, each with a leader."""
    rows = page.locator("#shards tbody tr")
    expect(rows).to_have_count(count, timeout=UI_TIMEOUT_MS)
    expect(page.locator('#shards tbody tr[data-leader-region=""]')).to_have_count(
        0, timeout=UI_TIMEOUT_MS
    )


def test_drain_a_region_from_the_page(live: Running, tmp_path: Path) -> None:
    screenshot = tmp_path / "console-drain.png"  # during the drain if it lasts, else after
    groups = live.topology.shard_count + 1  # and the meta group
    errors: list[str] = []
    with console_process(live, tmp_path) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    errors.append(message.text)

            page.on("console", on_console)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            cards = page.locator("#regions .region-card")
            expect(cards).to_have_count(3, timeout=UI_TIMEOUT_MS)
            for name in ("shenzhen", "shanghai", "tianjin"):
                card = page.locator(f'#regions .region-card[data-region="{name}"]')
                expect(card.locator("[data-state]")).to_have_text("active")
                expect(page.locator(f'#map g[data-region="{name}"]')).to_have_count(1)
            _shard_rows(page, groups)
            led_there = page.locator(f'#shards tbody tr[data-leader-region="{DRAINED}"]')
            assert led_there.count() > 0  # the fixture led every shard from home

            page.locator(f'#regions .region-card[data-region="{DRAINED}"] '
                         'button[data-action="drain"]').click()  # fmt: skip
            dialog = page.locator("#confirm")
            expect(dialog).to_be_visible()
            expect(page.locator("#confirm-text")).to_contain_text(f"Drain {DRAINED}")
            page.locator("#confirm-ok").click()
            expect(page.locator("#actions li").first).to_contain_text(
                f"drain {DRAINED}", timeout=UI_TIMEOUT_MS
            )
            with contextlib.suppress(AssertionError):  # a quick drain may pass unseen
                expect(page.locator(f'[data-drain="{DRAINED}"]')).to_be_visible(timeout=5_000)
                page.screenshot(path=str(screenshot), full_page=True)

            state = page.locator(f'#regions .region-card[data-region="{DRAINED}"] [data-state]')
            expect(state).to_have_text("drained", timeout=DRAIN_TIMEOUT_MS)
            expect(page.locator('#actions li[data-state="done"]')).to_contain_text(
                f"{DRAINED} drained", timeout=UI_TIMEOUT_MS
            )
            expect(led_there).to_have_count(0, timeout=UI_TIMEOUT_MS)
            _shard_rows(page, groups)
            if not screenshot.exists():
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert errors == []
