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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
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
    # a narrower window narrows every chart, the replica plan's too (it kept its width)
    widths = (
        "() => ['plot', 'errorPlot', 'replicaPlot'].map((k) => window.forecasterDashboard[k].width)"
    )
    wide = page.evaluate(widths)
    page.set_viewport_size({"width": 800, "height": 1100})
    page.wait_for_function(
        "(w) => window.forecasterDashboard.replicaPlot.width < w", arg=wide[2], timeout=10_000
    )
    narrow = page.evaluate(widths)
    assert all(n < w for n, w in zip(narrow, wide, strict=True)), (wide, narrow)
    page.set_viewport_size({"width": 1280, "height": 1100})
    # the error chart's value axis names the unit, like the main chart's
    assert page.evaluate("window.forecasterDashboard.errorPlot.axes[1].label") == "requests/5min"

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
    assert "no forecast published yet" in page.locator("#status").inner_text()
    assert problems == [], problems
    assert foreign == [], f"the page fetched from outside the API: {foreign}"


MEMBER = 'checkout_rps_by_route{route="/api/../admin"}'
LONG = "x" * 270


def _seed_awkward_series(tmp_path: Path) -> None:
    """Next to the seeded store's series: a split_by member whose label value has a
    ``..`` path segment, a series whose observations stopped two days ago (its forecast
    with them) and one with a 270-character name."""
    from datetime import UTC, datetime, timedelta

    from forecaster.store.repository import Store
    from tests.support.dashboard_seed import make_engine_for
    from tests.support.forecasts import publish_bands

    engine = make_engine_for(f"sqlite:///{tmp_path / 'store.db'}")
    store = Store(engine)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for name, family, end in (
        (MEMBER, "checkout_rps_by_route", now),
        ("went_quiet", "went_quiet", now - timedelta(days=2)),
        (LONG, LONG[:128], now),
    ):
        sid = store.ensure_series(name=name, family=family, step_seconds=300, horizon_steps=12)
        stamps = [end - timedelta(minutes=5 * i) for i in range(48)]
        store.upsert_observations(sid, [(ts, 100.0 + i % 7) for i, ts in enumerate(stamps)])
        publish_bands(store, name, end, timedelta(minutes=5), [(100.0, 90.0, 110.0)] * 12)
    engine.dispose()


def _status(page: Any) -> str:
    page.wait_for_function(
        "document.querySelector('#status').textContent.startsWith('updated') || "
        "document.querySelector('#status').className === 'error'",
        timeout=10_000,
    )
    text: str = page.locator("#status").inner_text()
    return text


def test_dashboard_handles_awkward_names_links_errors_and_slow_answers(
    api_url: str, browser: Any, tmp_path: Path
) -> None:
    _seed_awkward_series(tmp_path)
    deadline = time.monotonic() + 15
    while len(httpx.get(f"{api_url}/v1/series").json()) < 5:  # the view refreshes each second
        assert time.monotonic() < deadline, "the API did not pick up the new series"
        time.sleep(0.3)
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    # a member whose label value has "/../": its own chart, not a 404 for ".../admin"
    page.goto(f"{api_url}/dashboard?series={quote(MEMBER)}")
    assert _status(page).startswith("updated"), page.locator("#status").inner_text()
    assert page.evaluate("window.forecasterDashboard.data.series") == MEMBER

    # a shared link with a window the menu does not offer
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=12h")
    assert _status(page).startswith("updated")
    assert page.locator("#window").input_value() == "12h"
    assert page.evaluate("window.forecasterDashboard.data.window_seconds") == 43200

    # the API's 422 explanation, not "Unprocessable Entity"
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=1m")
    assert "shorter than 5m" in _status(page)

    # a series gone quiet: said so, not a blank chart with "0 observations"
    page.goto(f"{api_url}/dashboard?series=went_quiet")
    status = _status(page)
    assert "none in this window: the newest is from" in status
    assert "the forecast is stale" in status
    assert status.split(" ")[1].endswith("Z")  # the time is UTC like the rest

    # the long name does not widen the page
    page.goto(f"{api_url}/dashboard?series={LONG}")
    _status(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    # a zoom survives the minute refresh of the same series and window
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=3d")
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    box = page.locator("#chart .u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    scale = (
        "() => [window.forecasterDashboard.plot.scales.x.min, "
        "window.forecasterDashboard.plot.scales.x.max]"
    )
    zoomed = page.evaluate(scale)
    page.evaluate("window.forecasterDashboard.reload()")
    page.wait_for_timeout(1500)
    assert page.evaluate(scale) == pytest.approx(zoomed)

    # a slow answer for an earlier choice does not overwrite the newer one
    page.evaluate(
        """() => {
          const original = window.fetch;
          window.fetch = (url, opts) => String(url).includes('window=7d')
            ? new Promise((r) => setTimeout(r, 1500)).then(() => original(url, opts))
            : original(url, opts);
        }"""
    )
    page.select_option("#window", "7d")
    page.wait_for_timeout(200)
    page.select_option("#window", "6h")
    page.wait_for_timeout(3000)
    assert page.evaluate("window.forecasterDashboard.data.window_seconds") == 6 * 3600


def test_dashboard_recovers_when_the_api_was_unreachable(api_url: str, browser: Any) -> None:
    """A page opened while the API restarts (or before any series exists) must pick
    the series up on its minute refresh, not stay blank until reloaded by hand."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused: list[str] = []

    def series_once(route: Any) -> None:
        if not refused:
            refused.append(route.request.url)
            route.fulfill(
                status=503,
                content_type="application/json",
                body='{"detail": "the store is not reachable"}',
            )
        else:
            route.continue_()

    page.route("**/v1/series", series_once)
    page.clock.install()
    page.goto(f"{api_url}/dashboard?series={SERIES}")
    assert "the store is not reachable" in _status(page)
    page.clock.run_for(61_000)  # the minute refresh
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    assert _status(page).startswith("updated")
    assert page.locator("#series").input_value() == SERIES

    # the API going away later: said in words, not "Failed to fetch"
    page.route("**/v1/dashboard/**", lambda route: route.abort())
    page.clock.run_for(61_000)
    # waited for by its words: a stale forecast (the seeded data's age depends on the
    # time of day) also shows the status in red
    page.wait_for_function(
        "document.querySelector('#status').className === 'error' && "
        "document.querySelector('#status').innerText.includes('cannot reach the API')",
        timeout=10_000,
    )


def _add_series(
    api_url: str,
    tmp_path: Path,
    name: str,
    values: list[float | None],
    unit: str = "",
    *,
    also_made: Any = None,
) -> None:
    """Store ``name`` (5-minute steps, the last one now; ``None``: no observation) with
    a flat forecast at its last value, and wait until the API lists it. ``also_made``
    (a timedelta): another such forecast published that long before, and none between."""
    from datetime import UTC, datetime, timedelta

    from forecaster.store.repository import Store
    from tests.support.dashboard_seed import make_engine_for
    from tests.support.forecasts import publish_bands

    engine = make_engine_for(f"sqlite:///{tmp_path / 'store.db'}")
    store = Store(engine)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    sid = store.ensure_series(name=name, family=name, unit=unit, step_seconds=300, horizon_steps=12)
    n = len(values)
    stamps = [now - timedelta(minutes=5 * (n - 1 - i)) for i in range(n)]
    store.upsert_observations(
        sid, [(ts, v) for ts, v in zip(stamps, values, strict=True) if v is not None]
    )
    last = next(v for v in reversed(values) if v is not None)
    if also_made is not None:
        band = [(last, last * 0.9, last * 1.1)] * 12
        publish_bands(store, name, now - also_made, timedelta(minutes=5), band)
    publish_bands(store, name, now, timedelta(minutes=5), [(last, last * 0.9, last * 1.1)] * 12)
    engine.dispose()
    deadline = time.monotonic() + 15
    while name not in {s["name"] for s in httpx.get(f"{api_url}/v1/series").json()}:
        assert time.monotonic() < deadline, f"the API did not pick up {name}"
        time.sleep(0.3)


def test_dashboard_does_not_draw_a_line_across_missing_observations(
    api_url: str, browser: Any, tmp_path: Path
) -> None:
    """Two hours without observations (an ingest outage) stay blank: a line drawn
    across them showed load that was never measured."""
    values: list[float | None] = [100.0 + i % 7 for i in range(72)]
    values[20:44] = [None] * 24
    _add_series(api_url, tmp_path, "gappy", values, unit="req/s")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series=gappy&window=6h")
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    inked = page.evaluate(
        """() => {
          const u = window.forecasterDashboard.plot;
          const t = u.data[0].filter((x, i) => u.data[1][i] !== null);
          // the middle of the longest stretch without observations, and of a full one
          let gap = 0, at = 0;
          for (let i = 1; i < t.length; i++) {
            if (t[i] - t[i - 1] > gap) { gap = t[i] - t[i - 1]; at = i; }
          }
          const column = (ts) => {
            const x = Math.round(u.valToPos(ts, 'x', true));
            const px = u.ctx.getImageData(x - 1, u.bbox.top, 3, u.bbox.height).data;
            let dark = 0;
            for (let i = 0; i < px.length; i += 4)
              if (px[i + 3] > 150 && px[i] < 90 && px[i + 1] < 90 && px[i + 2] < 90) dark++;
            return dark;
          };
          return {gap, inGap: column((t[at] + t[at - 1]) / 2), measured: column(t[5] + 150)};
        }"""
    )
    assert inked["gap"] == 25 * 300
    assert inked["measured"] > 0  # the check sees the actual line where there is one
    assert inked["inGap"] == 0, "a line is drawn across the missing observations"


def test_dashboard_value_axis_reads_tiny_and_huge_values(
    api_url: str, browser: Any, tmp_path: Path
) -> None:
    """A latency around a millisecond in seconds and a byte count in the trillions: the
    value axis' ticks must differ from each other and fit the axis, and hovering must
    not round a 1.23 ms latency to 0.001."""
    _add_series(
        api_url, tmp_path, "latency_s", [0.0012 + 0.0003 * (i % 7) / 6 for i in range(72)], "s"
    )
    _add_series(api_url, tmp_path, "bytes", [3.2e12 + 1e11 * (i % 5) for i in range(72)], "B")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    hover: dict[str, str] = {}
    for name in ("latency_s", "bytes"):
        page.goto(f"{api_url}/dashboard?series={name}&window=6h")
        page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
        axis = page.evaluate(
            """() => {
              const u = window.forecasterDashboard.plot;
              const a = u.axes[1];
              u.ctx.font = a.font[0];
              const widest = Math.max(...a._values.map((v) => u.ctx.measureText(v).width));
              return {values: a._values, widest: widest / devicePixelRatio,
                      room: a._size - a.ticks.size - a.gap,
                      hover: u.series[1].value(u, 0.00123)};
            }"""
        )
        values = axis["values"]
        assert len(set(values)) == len(values) > 2, values
        assert axis["widest"] <= axis["room"], f"{values} do not fit the axis"
        hover[name] = axis["hover"]
    assert hover["latency_s"] == "0.00123 s"


def test_dashboard_says_how_much_earlier_an_earlier_forecast_was_made(
    api_url: str, browser: Any, tmp_path: Path
) -> None:
    """Publishing stopped for six hours: the newest forecast made at least an hour ago
    is six hours old, and the legend and the error chart must not call it "1 h"."""
    from datetime import timedelta

    _add_series(api_url, tmp_path, "paused", [100.0] * 144, also_made=timedelta(hours=6))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series=paused&window=24h")
    page.wait_for_function("window.forecasterDashboard.errorPlot !== null", timeout=20_000)
    label = page.evaluate("window.forecasterDashboard.plot.series[5].label")
    assert label == "made 6 h earlier"
    assert page.locator("#error-title").inner_text() == "Error of the forecast made 6 h earlier"
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=24h")  # published every hour
    page.wait_for_function("window.forecasterDashboard.errorPlot !== null", timeout=20_000)
    assert page.evaluate("window.forecasterDashboard.plot.series[5].label") == "made 1 h earlier"
    assert page.evaluate("window.forecasterDashboard.plot.series[6].label") == (
        "made 1 day earlier"
    )
    assert "an hour earlier" in page.locator("#error-title").inner_text()


def test_dashboard_events_table_shows_direction_and_why_an_event_closed(
    api_url: str, browser: Any, tmp_path: Path
) -> None:
    """The events table left out the direction the API sends, and an event closed
    because its series stopped being watched read like any other."""
    from datetime import UTC, datetime, timedelta

    from forecaster.consumers.regressions import RegressionEvent, Transition
    from forecaster.store.consumers_repo import ConsumersRepo
    from forecaster.store.repository import Store
    from tests.support.dashboard_seed import make_engine_for

    _add_series(api_url, tmp_path, "watched", [100.0] * 72, unit="ms")
    engine = make_engine_for(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        event = RegressionEvent(
            start=now - timedelta(hours=2),
            end=None,
            peak_score=4.5,
            direction="up",
            model="lightgbm v2",
            detected_at=now - timedelta(hours=2),
        )
        closed = RegressionEvent(**{**event.__dict__, "end": now - timedelta(hours=1)})
        ConsumersRepo(Store(engine)).save_detection(
            Store(engine).series("watched").id,
            state={},
            open_event_id=None,
            transitions=[Transition("opened", event), Transition("closed", closed)],
            closed_reason="no longer watched: watch: was removed from its spec",
        )
    finally:
        engine.dispose()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series=watched&window=6h")
    page.wait_for_selector("#events tbody tr", timeout=20_000)
    headers = page.locator("#events thead th").all_inner_texts()
    assert headers == ["start", "end", "direction", "peak score"]
    cells = page.locator("#events tbody tr").first.locator("td").all_inner_texts()
    assert cells[2] == "up" and cells[3] == "4.50"
    assert "(no longer watched: watch: was removed from its spec)" in cells[1]


def _add_events(tmp_path: Path, name: str) -> None:
    """An event closed because ``name`` stopped being watched, and an open one."""
    from datetime import UTC, datetime, timedelta

    from forecaster.consumers.regressions import RegressionEvent, Transition
    from forecaster.store.consumers_repo import ConsumersRepo
    from forecaster.store.repository import Store
    from tests.support.dashboard_seed import make_engine_for

    engine = make_engine_for(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store = Store(engine)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        sid = store.series(name).id
        event = RegressionEvent(
            start=now - timedelta(hours=5),
            end=None,
            peak_score=4.5,
            direction="up",
            model="lightgbm v2",
            detected_at=now - timedelta(hours=5),
        )
        closed = RegressionEvent(**{**event.__dict__, "end": now - timedelta(hours=3)})
        ConsumersRepo(store).save_detection(
            sid,
            state={},
            open_event_id=None,
            transitions=[Transition("opened", event), Transition("closed", closed)],
            closed_reason="no longer watched: watch: was removed from its spec",
        )
        opened = RegressionEvent(**{**event.__dict__, "start": now - timedelta(hours=1)})
        ConsumersRepo(store).save_detection(
            sid, state={}, open_event_id=None, transitions=[Transition("opened", opened)]
        )
    finally:
        engine.dispose()


PHONE = {"width": 390, "height": 844}


def test_dashboard_fits_a_phone(api_url: str, browser: Any, tmp_path: Path) -> None:
    """At 390 px wide nothing scrolls sideways (the page, a chart or a panel) and the
    trainings' reasons and the events' ends read in lines of words: the trainings
    table squeezed its reason column to a letter or two per line, behind a scrollbar."""
    _add_events(tmp_path, SERIES)
    page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=24h")
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    page.wait_for_selector("#events tbody tr", timeout=10_000)
    page.wait_for_function("window.forecasterDashboard.errorPlot !== null", timeout=10_000)
    layout = page.evaluate(
        """() => {
          const wide = [...document.querySelectorAll('header, .chart-card, .panel')]
            .filter((n) => !n.hidden && n.scrollWidth > n.clientWidth + 1)
            .map((n) => `${n.id || n.className}: ${n.scrollWidth} > ${n.clientWidth}`);
          const cell = (panel, text) => [...document.querySelectorAll(`#${panel} td`)]
            .filter((td) => td.textContent.includes(text))[0];
          const reason = cell('trainings', 'beats the baseline');
          const ended = cell('events', 'no longer watched');
          const lines = (node) => Math.round(
            node.getBoundingClientRect().height / parseFloat(getComputedStyle(node).lineHeight));
          return {page: document.documentElement.scrollWidth, wide,
                  reasonWidth: reason.getBoundingClientRect().width, reasonLines: lines(reason),
                  endWidth: ended.getBoundingClientRect().width,
                  charts: ['plot', 'errorPlot'].map((k) => window.forecasterDashboard[k].width)};
        }"""
    )
    assert layout["page"] <= PHONE["width"], layout
    assert layout["wide"] == [], layout
    assert layout["reasonWidth"] >= 200 and layout["reasonLines"] <= 4, layout
    assert layout["endWidth"] >= 200, layout
    assert all(w <= PHONE["width"] - 20 for w in layout["charts"]), layout
    # every cell still says which column it belongs to
    labels = page.evaluate(
        "() => [...document.querySelectorAll('#trainings tbody tr:first-child td')]"
        ".map((td) => td.dataset.label)"
    )
    assert labels == ["trained", "estimator", "MASE", "promoted", "reason"]


SCALE = (
    "() => { const u = window.forecasterDashboard.plot; "
    "return {min: u.scales.x.min, max: u.scales.x.max, "
    "first: u.data[0][0], last: u.data[0][u.data[0].length - 1]}; }"
)


def test_dashboard_chart_zooms_and_pans_from_the_keyboard(api_url: str, browser: Any) -> None:
    """Zoom and pan needed a mouse: the chart now takes the focus (and shows it), arrows
    pan, + and - zoom, 0 resets, and a Reset zoom button shows while zoomed."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=3d")
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    full = page.evaluate(SCALE)
    assert full["min"] == full["first"] and full["max"] == full["last"]
    assert page.locator("#chart-reset").is_hidden()

    page.locator("#window").focus()
    page.keyboard.press("Tab")
    focus = page.evaluate(
        "() => { const n = document.activeElement; const s = getComputedStyle(n); "
        "return {id: n.id, outline: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }"
    )
    assert focus["id"] == "chart" and focus["outline"] != "none" and focus["width"] >= 1, focus

    page.keyboard.press("+")
    zoomed = page.evaluate(SCALE)
    span = zoomed["max"] - zoomed["min"]
    assert span == pytest.approx((full["max"] - full["min"]) / 2)
    assert page.locator("#chart-reset").is_visible()
    page.keyboard.press("ArrowLeft")
    panned = page.evaluate(SCALE)
    assert panned["min"] == pytest.approx(zoomed["min"] - span / 10)
    assert panned["max"] - panned["min"] == pytest.approx(span)
    page.keyboard.press("Home")  # to the start, and no further
    page.keyboard.press("ArrowLeft")
    assert page.evaluate(SCALE)["min"] == pytest.approx(full["first"])
    page.keyboard.press("-")
    page.keyboard.press("-")  # zooming out stops at the whole window
    assert page.evaluate(SCALE)["max"] - page.evaluate(SCALE)["min"] == pytest.approx(
        full["max"] - full["min"]
    )
    assert page.locator("#chart-reset").is_hidden()

    for _ in range(3):
        page.keyboard.press("=")
    page.keyboard.press("0")
    assert page.evaluate(SCALE)["min"] == pytest.approx(full["first"])
    assert page.locator("#chart-reset").is_hidden()

    # the button resets and hands the focus back to the chart
    page.keyboard.press("+")
    page.locator("#chart-reset").click()
    after = page.evaluate(SCALE)
    assert (after["min"], after["max"]) == pytest.approx((full["first"], full["last"]))
    assert page.evaluate("document.activeElement.id") == "chart"
    # the error chart takes the keys too
    page.locator("#error-chart").focus()
    page.keyboard.press("+")
    assert page.locator("#error-chart-reset").is_visible()


def test_dashboard_chart_pinches_and_swipes_on_a_touch_screen(api_url: str, browser: Any) -> None:
    page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=3d")
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    full = page.evaluate(SCALE)
    box = page.locator("#chart .u-over").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    mid = box["x"] + box["width"] / 2
    cdp = page.context.new_cdp_session(page)

    def touch(kind: str, xs: list[float]) -> None:
        points = [{"x": x, "y": y, "id": i} for i, x in enumerate(xs)]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", [mid - 20, mid + 20])  # fingers apart: zoom in about the middle
    for k in range(1, 6):
        touch("touchMove", [mid - 20 - 10 * k, mid + 20 + 10 * k])
    touch("touchEnd", [])
    pinched = page.evaluate(SCALE)
    span = pinched["max"] - pinched["min"]
    assert span == pytest.approx((full["max"] - full["min"]) * 40 / 140, rel=0.05)
    assert page.locator("#chart-reset").is_visible()

    touch("touchStart", [mid])  # a swipe to the right shows earlier times
    for k in range(1, 6):
        touch("touchMove", [mid + 12 * k])
    touch("touchEnd", [])
    swiped = page.evaluate(SCALE)
    assert swiped["min"] == pytest.approx(pinched["min"] - 60 / box["width"] * span, rel=0.01)
    assert swiped["max"] - swiped["min"] == pytest.approx(span)
    # the hint speaks of touch, not of a mouse
    hint = page.locator("#chart-hint").inner_text()
    assert "Pinch to zoom" in hint and "double-click" not in hint


FAMILY = "api_requests_by_route_and_tenant"
ROUTES = ("/v1/users/{id}/sessions", "/v1/users/{id}/profile", "/v1/orders/{id}/items")


def _member(route: str, tenant: int) -> str:
    from forecaster.sources.base import member_name

    return member_name(FAMILY, {"route": route, "tenant": f"tenant-{tenant:03d}-acme-production"})


def test_dashboard_series_menu_reads_hundreds_of_long_member_names(
    api_url: str, browser: Any, tmp_path: Path
) -> None:
    """300 members of a split_by family whose names are longer than the menu: each read
    as the family's name and the start of its labels, all alike. The menu groups them
    under the family, names each by the labels that differ, keeps the full name in its
    title, and a filter box narrows it."""
    from forecaster.store.repository import Store
    from tests.support.dashboard_seed import make_engine_for

    engine = make_engine_for(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store = Store(engine)
        for tenant in range(100):
            for route in ROUTES:
                labels = {"route": route, "tenant": f"tenant-{tenant:03d}-acme-production"}
                store.ensure_series(
                    name=_member(route, tenant),
                    family=FAMILY,
                    labels=labels,
                    unit="req/s",
                    step_seconds=300,
                    horizon_steps=12,
                )
    finally:
        engine.dispose()
    _add_series(api_url, tmp_path, "zz_marker", [1.0] * 12)  # waits for the API to list them
    wanted = _member(ROUTES[0], 42)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series={quote(wanted)}")
    _status(page)
    menu = page.evaluate(
        """(wanted) => {
          const select = document.querySelector('#series');
          const opt = [...select.options].find((o) => o.value === wanted);
          const group = opt.parentElement;
          const ctx = document.createElement('canvas').getContext('2d');
          const style = getComputedStyle(select);
          ctx.font = `${style.fontSize} ${style.fontFamily}`;
          return {text: opt.text, title: opt.title, group: group.tagName, label: group.label,
                  members: group.children.length, selectTitle: select.title,
                  fits: ctx.measureText(opt.text).width < select.clientWidth - 30};
        }""",
        wanted,
    )
    assert menu["group"] == "OPTGROUP" and FAMILY in menu["label"], menu
    assert menu["members"] == 300
    assert not menu["text"].startswith(FAMILY)
    assert "/v1/users/{id}/sessions" in menu["text"] and "tenant-042" in menu["text"], menu
    assert menu["fits"], menu  # the closed menu shows the whole distinguishing part
    assert menu["title"] == wanted and menu["selectTitle"] == wanted

    # the filter: every word must appear in the name; Enter opens the first match
    search = page.locator("#series-filter")
    assert search.is_visible()
    search.fill("PROFILE tenant-07")
    names = page.evaluate(
        "() => [...document.querySelectorAll('#series option')].map(o => o.value)"
    )
    matches = [_member(ROUTES[1], t) for t in range(70, 80)]
    assert set(names) == {wanted, *matches}, names  # the shown series stays in the menu
    assert page.locator("#series").input_value() == wanted
    assert "10 of 303 match" in page.locator("#series-count").inner_text()
    search.press("Enter")
    page.wait_for_function(
        "(n) => window.forecasterDashboard.data && window.forecasterDashboard.data.series === n",
        arg=matches[0],
        timeout=10_000,
    )
    assert page.locator("#series").input_value() == matches[0]
    search.fill("")
    assert page.locator("#series option").count() == 303


def test_dashboard_says_so_in_the_chart_when_there_is_nothing_to_draw(
    api_url: str, browser: Any
) -> None:
    """A series with no observation and no forecast drew a blank white box the size of
    the chart, its legend all dashes: the chart itself now says why it is empty."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series=no_forecast_yet")
    _status(page)
    empty = page.locator("#chart .chart-empty")
    assert empty.is_visible()
    assert "no observations stored yet" in empty.inner_text()
    assert "no forecast published yet" in empty.inner_text()
    page.select_option("#series", SERIES)
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    assert page.locator("#chart .chart-empty").count() == 0


def test_dashboard_menu_picks_up_new_series_on_the_minute_refresh(
    api_url: str, browser: Any, tmp_path: Path
) -> None:
    """The series list was read once, when the page opened: a split_by member (or any
    series) that appeared later stayed out of the menu until the page was reloaded."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=3d")
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    _add_series(api_url, tmp_path, "arrived_later", [5.0] * 12)
    page.evaluate("window.forecasterDashboard.reload()")
    page.wait_for_function(
        "[...document.querySelectorAll('#series option')].some((o) => o.value === 'arrived_later')",
        timeout=10_000,
    )
    assert page.locator("#series").input_value() == SERIES  # the choice is kept
    page.select_option("#series", "arrived_later")
    page.wait_for_function(
        "window.forecasterDashboard.data.series === 'arrived_later'", timeout=10_000
    )


def test_dashboard_keeps_the_lines_hidden_from_the_legend_over_the_refresh(
    api_url: str, browser: Any
) -> None:
    """A line switched off in the legend came back at the next minute refresh (the
    chart was redrawn with every line shown): it now stays off, on other series too."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=3d")
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    shown = "(i) => window.forecasterDashboard.plot.series[i].show"
    assert page.evaluate(shown, 7)
    page.locator("#chart .u-legend .u-series").nth(7).locator("th").click()
    assert not page.evaluate(shown, 7)
    page.evaluate("window.forecasterDashboard.reload()")
    page.wait_for_timeout(1500)
    assert not page.evaluate(shown, 7)
    assert page.evaluate(shown, 6)
    page.select_option("#window", "24h")
    page.wait_for_function(
        "window.forecasterDashboard.data.window_seconds === 86400", timeout=10_000
    )
    assert not page.evaluate(shown, 7)
    page.locator("#chart .u-legend .u-series").nth(7).locator("th").click()
    page.evaluate("window.forecasterDashboard.reload()")
    page.wait_for_timeout(1500)
    assert page.evaluate(shown, 7)


def test_dashboard_legend_and_token_work_without_a_mouse(api_url: str, browser: Any) -> None:
    """A legend entry (which hides or shows its line) could only be clicked; the token
    box was named by its placeholder alone."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=24h")
    page.wait_for_selector("#chart[data-drawn='true'] canvas", timeout=20_000)
    page.locator("#chart").focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past "actual", to "forecast"
    entry = page.evaluate(
        "() => { const n = document.activeElement; "
        "return {text: n.textContent, role: n.getAttribute('role'), "
        "pressed: n.getAttribute('aria-pressed')}; }"
    )
    assert entry == {"text": "forecast (lightgbm)", "role": "button", "pressed": "true"}, entry
    page.keyboard.press("Enter")
    assert not page.evaluate("window.forecasterDashboard.plot.series[2].show")
    assert page.evaluate("document.activeElement.getAttribute('aria-pressed')") == "false"
    page.keyboard.press(" ")
    assert page.evaluate("window.forecasterDashboard.plot.series[2].show")
    assert page.evaluate("document.querySelector('#token').labels.length") == 1


def _record_full_training(tmp_path: Path) -> None:
    """A training of SERIES scored with every metric a real backtest reports, five
    candidates (the seeded trainings have three metrics)."""
    import json
    from datetime import UTC, datetime, timedelta

    from forecaster.store.repository import Store
    from tests.support.dashboard_seed import make_engine_for

    def scores(mase: float, smape: float, coverage: float) -> dict[str, float]:
        return {
            "mase": mase,
            "mase_median": mase * 0.95,
            "mase_trimmed": mase * 0.9,
            "smape": smape,
            "coverage": coverage,
            "width": 0.97,
            "mae": 31.25,
        }

    engine = make_engine_for(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        Store(engine).record_training(
            series=SERIES,
            run_id="run-full",
            estimator="lightgbm",
            model_version="3",
            promoted=False,
            reason="lightgbm MASE 0.740 does not beat the champion lightgbm (0.740) by 2%",
            metrics={
                "mase": 0.74,
                "flags": [],
                "scores": {
                    "seasonal_naive": scores(1.0, 31.2, 0.81),
                    "prophet": scores(0.82, 26.4, 0.88),
                    "lightgbm": scores(0.74, 24.9, 0.9),
                    "ets": scores(0.91, 28.0, 0.86),
                    "mstl": scores(0.79, 25.5, 0.891),
                },
            },
            artifact=json.dumps({"kind": "test"}),
            trained_at=datetime.now(UTC) - timedelta(hours=2),
        )
    finally:
        engine.dispose()


BACKTEST = """() => {
  const panel = document.querySelector('#backtest-panel').getBoundingClientRect();
  const heads = [...document.querySelectorAll('#backtest th')];
  const first = [...document.querySelectorAll('#backtest tbody td:first-child')];
  return {heads: heads.map((h) => h.textContent),
          hidden: heads.filter((h) => h.getBoundingClientRect().right > panel.right + 1)
            .map((h) => h.textContent),
          wrapped: first.filter((td) => td.getBoundingClientRect().height > 30)
            .map((td) => td.textContent),
          firstLeft: first[0].getBoundingClientRect().left - panel.left,
          row: [...document.querySelectorAll('#backtest tbody tr:first-child td')]
            .map((td) => td.textContent)};
}"""


def test_dashboard_backtest_table_shows_every_metric(
    api_url: str, browser: Any, tmp_path: Path
) -> None:
    """A real training's seven metrics did not fit the backtest panel (a third of the
    page's width): sMAPE, coverage, width and MAE were behind a scrollbar, the headers
    were raw keys (mase_trimmed) and "seasonal_naive" broke in two."""
    _record_full_training(tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=24h")
    page.wait_for_selector("#backtest tbody tr", timeout=20_000)
    page.wait_for_function(
        "document.querySelectorAll('#backtest tbody tr').length === 5", timeout=10_000
    )
    table = page.evaluate(BACKTEST)
    assert table["heads"] == [
        "estimator",
        "MASE",
        "MASE median",
        "MASE trimmed",
        "sMAPE %",
        "coverage",
        "band width",
        "MAE",
    ]
    assert table["hidden"] == [] and table["wrapped"] == [], table
    assert table["row"] == [
        "lightgbm (chosen)",
        "0.740",
        "0.703",
        "0.666",
        "24.9",
        "90%",
        "0.97",
        "31.3",
    ]
    titles = page.evaluate("() => [...document.querySelectorAll('#backtest th')].map(h => h.title)")
    assert all(titles[1:]), titles  # each metric says what it measures

    # on a phone the table scrolls sideways under a column of estimator names that stays
    page.set_viewport_size(PHONE)
    page.evaluate(
        "() => { const s = document.querySelector('#backtest .table-scroll'); "
        "s.scrollLeft = s.scrollWidth; }"
    )
    phone = page.evaluate(BACKTEST)
    assert phone["wrapped"] == [] and 0 <= phone["firstLeft"] < 30, phone
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_dashboard_tab_title_names_the_series(api_url: str, browser: Any) -> None:
    """Every dashboard tab was titled "forecaster dashboard", whatever it showed."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=24h")
    _status(page)
    assert page.title() == f"{SERIES} · forecaster"
    page.select_option("#series", "no_forecast_yet")
    page.wait_for_function("document.title === 'no_forecast_yet · forecaster'", timeout=10_000)


def test_dashboard_does_not_announce_every_minute_refresh(api_url: str, browser: Any) -> None:
    """The status line was a live region whose text (its clock) changed every minute,
    so a screen reader read it out every minute: only a change of substance (another
    series, a warning, an error) is announced now."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=24h")
    _status(page)
    live = page.evaluate(
        "() => [...document.querySelectorAll('[role=status], [role=alert], [aria-live]')]"
        ".filter((n) => n.getAttribute('aria-live') !== 'off')"
        ".map((n) => ({id: n.id, text: n.textContent}))"
    )
    assert [n["id"] for n in live if n["id"] != "series-count"] == ["announce"], live
    said = page.locator("#announce").text_content()
    assert SERIES in said, said
    page.evaluate(
        "() => { window.changes = 0; new MutationObserver(() => window.changes++)"
        ".observe(document.querySelector('#announce'), "
        "{childList: true, characterData: true, subtree: true}); }"
    )
    page.evaluate("window.forecasterDashboard.reload()")
    page.wait_for_timeout(1500)
    assert page.evaluate("window.changes") == 0, said
    page.select_option("#series", "no_forecast_yet")
    page.wait_for_function(
        "document.querySelector('#announce').textContent.includes('no_forecast_yet')",
        timeout=10_000,
    )
    assert "no forecast published yet" in page.locator("#announce").text_content()


def test_dashboard_error_chart_follows_the_main_charts_zoom(api_url: str, browser: Any) -> None:
    """Zooming the main chart left the error chart below on its whole range, so the two
    stacked time axes showed different hours: it now shows the range zoomed to."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{api_url}/dashboard?series={SERIES}&window=24h")
    page.wait_for_function("window.forecasterDashboard.errorPlot !== null", timeout=20_000)
    ranges = (
        "() => ['plot', 'errorPlot'].map((k) => {"
        " const u = window.forecasterDashboard[k]; return [u.scales.x.min, u.scales.x.max]; })"
    )
    error_full = page.evaluate(ranges)[1]
    page.locator("#chart").focus()
    for key in ("+", "+", "End", "ArrowLeft"):
        page.keyboard.press(key)
    main, error = page.evaluate(ranges)
    assert error == pytest.approx(main)
    page.keyboard.press("0")
    assert page.evaluate(ranges)[1] == pytest.approx(error_full)
    note = page.locator("#error-chart .chart-empty")
    assert note.count() == 0

    # zoomed into the future the error chart has nothing to draw: it says why (it
    # stayed a blank box), and the note goes once the range holds errors again
    page.evaluate(
        "() => { const u = window.forecasterDashboard.plot;"
        " const end = u.data[0][u.data[0].length - 1];"
        " u.setScale('x', {min: end - 1800, max: end}); }"
    )
    error = page.evaluate(ranges)[1]
    errors_at = page.evaluate("() => window.forecasterDashboard.errorPlot.data[0]")
    assert not [t for t in errors_at if error[0] <= t <= error[1]]
    assert "the future has no actuals yet" in note.inner_text()
    page.keyboard.press("0")
    assert note.count() == 0
