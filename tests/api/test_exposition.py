"""The per-series gauges written straight to the text format (forecaster.api.exposition).

``/metrics`` no longer passes them through ``prometheus_client``; these tests check
that the text is exactly what ``generate_latest`` would write for the same values,
and that the forecast-max gauge's running maxima equal a maximum per window.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from forecaster.api.exposition import GaugeText, SelectedSeries, SeriesSelection, render
from forecaster.api.metrics import ForecastGauges
from forecaster.api.view import ForecastView
from forecaster.config import DatabaseSettings, Settings
from forecaster.consumers.exporter import WINDOWS, ForecastMaxGauges
from forecaster.consumers.planner import interval_quantile, interval_quantile_steps
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store

ODD = 'odd "name" \\ with\nnewline'


class _Families(Collector):
    def __init__(self, families: list[GaugeText]) -> None:
        self.families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for family in self.families:
            yield family.family()


def _via_prometheus_client(families: list[GaugeText]) -> str:
    registry = CollectorRegistry()
    registry.register(_Families(families))
    return generate_latest(registry).decode()


def test_a_family_is_written_as_generate_latest_writes_it() -> None:
    gauge = GaugeText("demo_gauge", "Help with a \\ backslash\nand a newline", ["zeta", "alpha"])
    gauge.add(("z1", ODD), 1.5)
    gauge.add(("z2", "plain"), 1e22)
    gauge.add(("z3", "neg"), -0.0)
    gauge.add(("z4", "inf"), float("inf"))
    bare = GaugeText("demo_bare", "No labels", [])
    bare.add((), 3.0)
    empty = GaugeText("demo_empty", "No values", ["series"])
    families = [gauge, bare, empty]
    assert render([_Source(families)], 0.0) == _via_prometheus_client(families)


class _Source:
    def __init__(self, families: list[GaugeText]) -> None:
        self._families = families

    def families(self, now: float, only: object = None) -> list[GaugeText]:  # noqa: ARG002
        return self._families


@pytest.fixture
def view(tmp_path: Path) -> Iterator[ForecastView]:
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'store.db'}"))
    upgrade(engine)
    store = Store(engine)
    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=7)
    step = timedelta(minutes=5)
    for k, name in enumerate(["rps", ODD, "latency_ms"]):
        sid = store.ensure_series(name=name, family="f", step_seconds=300, horizon_steps=24)
        store.upsert_observations(sid, [(origin, 10.0 + k)])
        store.publish_forecast(
            series=name,
            generated_at=datetime.now(UTC),
            origin=origin,
            step_seconds=300,
            level=90.0,
            model_name="auto",
            model_version="1",
            run_id="r",
            points=[
                ForecastPoint(
                    step=i,
                    ds=origin + i * step,
                    yhat=100.0 + 10 * k + (i * 7) % 5,
                    yhat_lower=80.0 + (i * 3) % 4,
                    yhat_upper=130.0 + 10 * k + (i * 11) % 9,
                )
                for i in range(1, 25)
            ],
        )
    view = ForecastView(store)
    assert view.refresh()
    yield view
    engine.dispose()


def test_the_forecast_gauges_match_prometheus_client(view: ForecastView) -> None:
    settings = Settings(database=DatabaseSettings(url="sqlite://"))
    sources: list[Any] = [ForecastGauges(view), ForecastMaxGauges(view, settings)]
    now = time.time()
    families = [f for source in sources for f in source.families(now)]
    text = render(sources, now)
    assert text == _via_prometheus_client(families)
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    series = {s.labels["series"] for s in parsed["forecaster_forecast_max"].samples}
    assert series == {"rps", ODD, "latency_ms"}


def test_forecast_max_is_the_max_over_each_window(view: ForecastView) -> None:
    settings = Settings(database=DatabaseSettings(url="sqlite://"))
    now = time.time()
    (family,) = ForecastMaxGauges(view, settings).families(now)
    got = {labels: value for labels, value in family.values}
    expected = {}
    for name, cached in view.state.forecasts.items():
        fc = cached.forecast
        for label, seconds in WINDOWS:
            lo, hi = view.window_ahead(cached, now - fc.step_seconds, now + seconds)
            if hi <= lo or cached.ds_epoch[hi - 1] < now + seconds - fc.step_seconds:
                continue
            for q in (0.5, 0.9, 0.95):
                peak = max(
                    interval_quantile(q, yhat=y, yhat_lower=lo_, yhat_upper=up, level=fc.level)
                    for y, lo_, up in cached.columns.bands(lo, hi)
                )
                expected[(name, f"{q:.3g}", label)] = max(peak, 0.0)
    assert got == expected
    assert len(expected) == 3 * 3 * len(WINDOWS)


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(
    q=st.sampled_from([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]),
    steps=st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=20),
)
def test_quantile_of_every_step_is_the_quantile_of_each(
    q: float, steps: list[tuple[float, float, float]]
) -> None:
    assert interval_quantile_steps(q, steps, level=90.0) == [
        interval_quantile(q, yhat=y, yhat_lower=lo, yhat_upper=up, level=90.0)
        for y, lo, up in steps
    ]


def test_kept_lines_always_equal_a_fresh_scrape(view: ForecastView) -> None:
    """The sources keep each series' lines between scrapes: whatever the time or the
    view does, the text must be what sources without anything kept would write."""
    settings = Settings(database=DatabaseSettings(url="sqlite://"))

    def sources() -> list[Any]:
        return [ForecastGauges(view), ForecastMaxGauges(view, settings)]

    kept = sources()
    start = time.time()
    for offset in (0.0, 1.0, 150.0, 299.0, 301.0, 900.0, 3000.0, 7200.0):
        now = start + offset
        assert render(kept, now) == render(sources(), now), offset

    # a new forecast for one series: its lines change, nothing else's does
    store = view.store
    origin = datetime.now(UTC).replace(second=0, microsecond=0)
    store.publish_forecast(
        series="rps",
        generated_at=datetime.now(UTC),
        origin=origin,
        step_seconds=300,
        level=90.0,
        model_name="auto",
        model_version="2",
        run_id="r2",
        points=[
            ForecastPoint(
                step=i,
                ds=origin + i * timedelta(minutes=5),
                yhat=500.0,
                yhat_lower=400.0,
                yhat_upper=600.0,
            )
            for i in range(1, 25)
        ],
    )
    assert view.refresh()
    now = time.time()
    text = render(kept, now)
    assert text == render(sources(), now)
    assert 'forecaster_forecast_max{quantile="0.95",series="rps",window="5m"} 600.0' in text


def test_kept_lines_have_no_values_to_rebuild_a_family_from() -> None:
    gauge = GaugeText("demo_gauge", "Help", ["series"])
    mark = gauge.mark()
    gauge.add(("a",), 1.0)
    chunk = gauge.since(mark)
    assert chunk == 'demo_gauge{series="a"} 1.0\n'
    later = GaugeText("demo_gauge", "Help", ["series"])
    later.extend(chunk)
    assert "".join(later.text()) == "".join(gauge.text())
    with pytest.raises(ValueError, match="kept lines"):
        later.family()


def test_a_selection_takes_names_and_split_by_families() -> None:
    only = SeriesSelection(frozenset({"rps", "by_route", 'by_host{host="a"}', "typo"}))
    assert only("rps")
    assert not only("rps2")
    assert only('by_route{route="/pay"}')
    assert only('by_host{host="a"}')
    assert not only('by_host{host="b"}')
    assert not only("by_route_2")
    known = ["rps", 'by_route{route="/pay"}', 'by_host{host="a"}', 'by_host{host="b"}']
    assert only.unmatched(known) == ["typo"]


def _samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_selective_scrape_is_the_full_scrape_of_those_series(view: ForecastView) -> None:
    settings = Settings(database=DatabaseSettings(url="sqlite://"))
    sources: list[Any] = [ForecastGauges(view), ForecastMaxGauges(view, settings)]
    now = time.time()
    full = _samples(render(sources, now))
    only = SeriesSelection(frozenset({ODD, "nope"}))
    selected = _samples(render(sources, now, only))
    unknown = {s for s in selected if s[0] == "forecaster_metrics_unknown_series"}
    assert unknown == {("forecaster_metrics_unknown_series", (("series", "nope"),), 1.0)}
    expected = {s for s in full if dict(s[1]).get("series", ODD) == ODD}
    assert selected - unknown == expected
    assert any(s[0] == "forecaster_forecast_max" for s in expected)
    assert any(s[0] == "forecaster_view_refresh_ok" for s in expected)


def test_kept_lines_survive_selective_scrapes(view: ForecastView) -> None:
    """Scrapes of different selections share what the sources keep, and every one
    equals what sources without anything kept would write."""
    settings = Settings(database=DatabaseSettings(url="sqlite://"))

    def sources() -> list[Any]:
        return [ForecastGauges(view), ForecastMaxGauges(view, settings)]

    kept = sources()
    rps = SeriesSelection(frozenset({"rps"}))
    latency = SeriesSelection(frozenset({"latency_ms"}))
    start = time.time()
    for offset, only in [(0.0, rps), (1.0, latency), (2.0, None), (3.0, rps), (400.0, latency)]:
        now = start + offset
        assert render(kept, now, only) == render(sources(), now, only), offset
    forecast_gauges = kept[0]
    assert set(forecast_gauges._kept) == {"rps", ODD, "latency_ms"}


def test_selected_series_filters_registry_samples() -> None:
    registry = CollectorRegistry()
    per_series = GaugeText("demo_score", "Per series", ["series"])
    per_series.add(("a",), 1.0)
    per_series.add(("b",), 2.0)
    total = GaugeText("demo_total", "Pipeline-wide", ["stage"])
    total.add(("ingest",), 3.0)
    registry.register(_Families([per_series, total]))
    text = generate_latest(SelectedSeries(registry, SeriesSelection(frozenset({"b"})))).decode()
    assert 'demo_score{series="b"} 2.0' in text
    assert 'series="a"' not in text
    assert 'demo_total{stage="ingest"} 3.0' in text
