"""The support console shows a new alert live and acknowledges it, in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
INSTALLER = Path(__file__).resolve().parents[4] / "deploy" / "local" / "chromium.sh"
EXECUTABLE = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
ROUTING = """
route:
  receiver: support
receivers:
  - name: support
    sse: true
"""


async def test_console_shows_new_alert_and_acknowledges_it(
    alerting_service, send_signals, signal_factory, waiter
):
    if EXECUTABLE is None:
        pytest.skip(f"chromium not found; run {INSTALLER} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    svc = await alerting_service(ROUTING)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=EXECUTABLE,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{svc.base_url}/console?team=support&token=test-token")
            await page.wait_for_selector("#conn:text('live')", timeout=15_000)
            signal = signal_factory("negative_feedback", "cus_console", channel="chat")
            await send_signals(signal)
            row = page.locator(".alert.open")
            await row.wait_for(timeout=15_000)
            assert "negative_feedback" in await row.inner_text()
            await row.click()
            await page.click("#ack")
            await page.locator(".alert.acknowledged").wait_for(timeout=15_000)
        finally:
            await browser.close()
    [alert] = (await svc.client.get("/v1/alerts")).json()
    assert alert["status"] == "acknowledged" and alert["acked_by"] == "console"
