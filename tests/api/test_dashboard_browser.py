"""The dashboard in a real headless browser (Debian ``chromium`` driven by Playwright).

``forecaster serve`` runs over a store seeded with a real NAB trace on a free
loopback port; the page must load with no console errors or failed requests, draw
the series, react to hover and zoom, and leave a screenshot in the test's tmp dir.
Set ``DASHBOARD_SCREENSHOT=path`` to also copy it elsewhere (the README's
``docs/dashboard.png`` is made that way).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dashboard_seed import SERIES, running_api
from tests.support.promserver import free_port

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("FORECASTER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    """``forecaster serve`` on a free loopback port over a seeded SQLite store."""
    with running_api(tmp_path, free_port()) as base:
        yield base


@pytest.fixture
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is not installed (Debian package 'chromium', make system-deps)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_dashboard_draws_the_series_without_errors(
    api_url: str, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    problems: list[str] = []
    foreign: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
    page.on(
        "request",
        lambda req: None if req.url.startswith(api_url) else foreign.append(req.url),
    )

    page.goto(f"{api_url}/dashboard?series={SERIES}&window=3d&target_per_replica=40")
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    page.wait_for_function("window.forecasterDashboard.errorPlot !== null", timeout=10_000)
    page.wait_for_function("window.forecasterDashboard.replicaPlot !== null", timeout=10_000)
    assert page.locator("#replicas-panel").is_visible()

    drawn = page.evaluate(
        """() => {
          const d = window.forecasterDashboard;
          const u = d.plot;
          const count = (i) => u.data[i].filter((v) => v !== null).length;
          const canvas = document.querySelector('#chart canvas');
          const ctx = canvas.getContext('2d');
          const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
          let inked = 0;
          for (let i = 3; i < px.length; i += 4) if (px[i] > 0) inked++;
          return {actual: count(1), forecast: count(2), lower: count(3), hour: count(5),
                  day: count(6), refLower: count(7), refUpper: count(8),
                  refShown: u.series[7].show && u.series[8].show,
                  inked, series: document.querySelector('#series').value,
                  title: document.querySelector('#chart-title').textContent,
                  champion: document.querySelector('#champion').textContent,
                  backtest: document.querySelectorAll('#backtest tbody tr').length};
        }"""
    )
    assert drawn["series"] == SERIES
    assert drawn["actual"] > 800  # 3 days of 5-minute steps
    assert drawn["forecast"] == 288 and drawn["lower"] == 288
    assert drawn["hour"] > 0 and drawn["day"] > 0
    assert drawn["refLower"] == drawn["refUpper"] == 288 and drawn["refShown"]
    assert drawn["inked"] > 10_000, "the chart canvas is (almost) blank"
    assert "predicted vs actual" in drawn["title"]
    assert "lightgbm" in drawn["champion"]
    assert drawn["backtest"] == 3

    # Hover: the legend shows live values for the point under the cursor.
    box = page.locator("#chart .u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    legend = page.locator("#chart .u-legend .u-series").nth(1).locator(".u-value").inner_text()
    assert legend not in ("", "–")

    # Zoom: dragging across the plot narrows the x scale.
    before = page.evaluate(
        "() => window.forecasterDashboard.plot.scales.x.max - "
        "window.forecasterDashboard.plot.scales.x.min"
    )
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    after = page.evaluate(
        "() => window.forecasterDashboard.plot.scales.x.max - "
        "window.forecasterDashboard.plot.scales.x.min"
    )
    assert after < before * 0.5
    page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    page.select_option("#window", "24h")
    page.wait_for_function(
        "window.forecasterDashboard.data.window_seconds === 86400", timeout=10_000
    )
    page.mouse.move(box["x"] + box["width"] * 0.72, box["y"] + box["height"] * 0.6)
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    copy_to = os.environ.get("DASHBOARD_SCREENSHOT")
    if copy_to:
        shutil.copyfile(shot, copy_to)

    # Switching series reloads without errors (a series with no forecast yet).
    page.select_option("#series", "no_forecast_yet")
    page.wait_for_function(
        "document.querySelector('#status').textContent.startsWith('updated')", timeout=10_000
    )
    assert "no champion" in page.locator("#champion").inner_text()
    assert problems == [], problems
    assert foreign == [], f"the page fetched from outside the API: {foreign}"
