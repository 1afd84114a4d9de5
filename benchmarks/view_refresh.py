"""What a serving process's background refresh costs, by how much of the store changed.

The API workers refresh their forecast view every second and the KEDA scaler every
two (with the newest observation of every series). Both poll the store's change
marker and re-read only the series stamped since their snapshot. For each series
count this builds a store (``benchmarks/serving.py``'s: every series with a
24-hour forecast at 5 minutes), loads a ``ForecastView`` and a
``LatestObservations`` and times one refresh of each after an ingest wrote a new
observation to 0, 100 or every series (each write a real ``upsert_observations``
transaction, as the ingest job's). The median of five rounds is reported, each
timed refresh after a full garbage collection (the serving processes freeze their
start-up heap, so their collections are short).

    .venv/bin/python -m benchmarks.view_refresh [--series 1000 5000]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]

Writes ``benchmarks/results/view_refresh.md`` (``view_refresh_postgres.md`` with a
PostgreSQL ``--database``), pasted into the README by ``benchmarks/update_readme.py``.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.serving import REPO, build_store, scratch_schema
from forecaster.outputs import write_report

ROUNDS = 5
SCORE_DAYS = 14  # what the detection job keeps (forecaster.jobs.detect.SCORE_RETENTION)


def refresh_ms(url: str, n: int) -> list[tuple[int, float, float, float]]:
    """``(series written, view ms, latest-observations ms, view ms re-reading all)`` per case.

    The last is what every refresh cost before the change marker: the same refresh
    told it holds no revision, so it reads every series row (the forecasts it holds
    are still reused, as they were then).
    """
    from forecaster.api.view import ForecastView
    from forecaster.config import DatabaseSettings
    from forecaster.consumers.scaling import LatestObservations
    from forecaster.store.db import make_engine
    from forecaster.store.repository import Store

    engine = make_engine(DatabaseSettings(url=url))
    store = Store(engine)
    view = ForecastView(store)
    latest = LatestObservations(store)
    if not (view.refresh() and latest.refresh()):
        raise SystemExit(f"the view did not load: {view.state.error}")
    ids = [info.id for info in store.list_series()]
    rows = []
    stamp = datetime.now(UTC).replace(microsecond=0).timestamp()
    for written in sorted({0, min(100, n), n}):
        view_times, latest_times, full_times = [], [], []
        for _ in range(ROUNDS):
            stamp += 60
            at = datetime.fromtimestamp(stamp, UTC)
            for series_id in ids[:written]:
                store.upsert_observations(series_id, [(at, 1.0)])
            gc.collect()
            started = time.perf_counter()
            view.refresh()
            view_times.append(time.perf_counter() - started)
            gc.collect()
            started = time.perf_counter()
            latest.refresh()
            latest_times.append(time.perf_counter() - started)
            view._state = replace(view.state, revision=None)  # noqa: SLF001 - the old path
            gc.collect()
            started = time.perf_counter()
            view.refresh()
            full_times.append(time.perf_counter() - started)
        if view.state.error or len(view.state.forecasts) != n:
            raise SystemExit(f"the view lost forecasts: {view.state.error}")
        rows.append(
            (
                written,
                statistics.median(view_times) * 1000,
                statistics.median(latest_times) * 1000,
                statistics.median(full_times) * 1000,
            )
        )
    engine.dispose()
    return rows


#: Series a selective scrape asks for (``/metrics?series=...``), as a KEDA prometheus
#: trigger's scrape job would for the workloads it scales.
SELECTED = 10


def scrape_ms(url: str) -> tuple[float, float, float, float, float]:
    """(median ms, KB, MB kept, selective median ms, selective KB) of ``GET /metrics``
    answered by the API app on ``url``; the selective scrape asks for
    :data:`SELECTED` series by name.

    In process (FastAPI's test client) so the time is the work of the answer, not a
    network stack's: Prometheus scrapes it every 15-60 s, in the same interpreter
    that serves the reads. The memory the app keeps from one scrape to the next (the
    per-series lines, :mod:`forecaster.api.exposition`) is measured with
    ``tracemalloc`` on a second app, so tracing does not slow the timed scrapes.
    """
    import tracemalloc

    from fastapi.testclient import TestClient

    from forecaster.api.app import create_app
    from forecaster.config import DatabaseSettings, ScheduleSettings, Settings

    settings = Settings(
        database=DatabaseSettings(url=url),
        schedule=ScheduleSettings(stale_after_seconds=86400),
    )
    with TestClient(create_app(settings)) as client:
        client.get("/metrics").raise_for_status()  # first answer warms the route
        times, size = [], 0
        for _ in range(ROUNDS):
            gc.collect()
            started = time.perf_counter()
            answer = client.get("/metrics")
            times.append(time.perf_counter() - started)
            answer.raise_for_status()
            size = len(answer.content)
        names = sorted(client.app.state.view.state.forecasts)[:SELECTED]  # type: ignore[attr-defined]
        selective, selective_size = [], 0
        for _ in range(ROUNDS):
            gc.collect()
            started = time.perf_counter()
            answer = client.get("/metrics", params={"series": names})
            selective.append(time.perf_counter() - started)
            answer.raise_for_status()
            selective_size = len(answer.content)
    with TestClient(create_app(settings)) as client:
        gc.collect()
        tracemalloc.start()
        client.get("/metrics").raise_for_status()
        client.get("/metrics").raise_for_status()
        gc.collect()
        kept, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return (
        statistics.median(times) * 1000,
        size / 1024,
        kept / 2**20,
        statistics.median(selective) * 1000,
        selective_size / 1024,
    )


def consumer_refresh_ms(url: str, watched: int, days: int = SCORE_DAYS) -> float:
    """Median ms of the API's consumer-view refresh with ``watched`` series scored for ``days``.

    Each watched series gets ``days`` of anomaly scores at 5 minutes and a detector
    state, as the detection job leaves them (``save_detection``).
    """
    from forecaster.api.consumers_view import ConsumerView
    from forecaster.config import DatabaseSettings
    from forecaster.store.consumers_repo import ConsumersRepo, ScoreRow
    from forecaster.store.db import make_engine
    from forecaster.store.repository import Store

    engine = make_engine(DatabaseSettings(url=url))
    store = Store(engine)
    repo = ConsumersRepo(store)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=days)
    step = timedelta(minutes=5)
    for i in range(watched):
        name = f"svc{i:04d}_latency"
        series_id = store.ensure_series(name=name, family=name, step_seconds=300, horizon_steps=288)
        scores = [
            ScoreRow(
                ts=start + k * step,
                value=1.0,
                yhat=1.0,
                yhat_lower=0.5,
                yhat_upper=1.5,
                score=0.0,
                side=0,
                publication_id=None,
                model="auto",
            )
            for k in range(days * 288)
        ]
        repo.save_detection(
            series_id, state={"bar": 3.0}, open_event_id=None, transitions=[], scores=scores
        )
    view = ConsumerView(store)
    times = []
    for _ in range(ROUNDS):
        gc.collect()
        started = time.perf_counter()
        if not view.refresh():
            raise SystemExit(f"the consumer view did not load: {view.state.error}")
        times.append(time.perf_counter() - started)
    if len(view.state.scores) != watched:
        raise SystemExit(f"the consumer view holds {len(view.state.scores)} of {watched} scores")
    engine.dispose()
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument(
        "--watched",
        type=int,
        default=100,
        help="watched series for the consumer-view row (0: skip it)",
    )
    parser.add_argument(
        "--no-scrape",
        dest="scrape",
        action="store_false",
        help="skip timing GET /metrics on the API",
    )
    parser.add_argument("--database", default=None, help="store URL (default: temp SQLite)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if any(n < 1 for n in args.series):
        parser.error("--series: every count must be at least 1")
    if args.watched < 0:
        parser.error("--watched: must be 0 or more")
    postgres = bool(args.database and args.database.startswith("postgresql"))
    name = "view_refresh_postgres.md" if postgres else "view_refresh.md"
    output = args.output or REPO / "benchmarks" / "results" / name
    table = [
        "| series | written since the last refresh | view refresh (ms) | "
        "latest observations refresh (ms) | view re-reading every row (ms) |",
        "|---|---|---|---|---|",
    ]
    scrapes = [
        "| series | GET /metrics (ms) | size (KB) | kept between scrapes (MB) | "
        f"GET /metrics?series= ({SELECTED} series) (ms) | its size (KB) |",
        "|---|---|---|---|---|---|",
    ]
    for n in args.series:
        print(f"{n} series: building the store ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp, scratch_schema(args.database) as scratch:
            url = scratch or f"sqlite:///{Path(tmp) / 'bench.db'}"
            build_store(url, n)
            for written, view_ms, latest_ms, full_ms in refresh_ms(url, n):
                table.append(
                    f"| {n} | {written} | {view_ms:.2f} | {latest_ms:.2f} | {full_ms:.2f} |"
                )
                print(table[-1], flush=True)
            if args.scrape:
                ms, kb, mb, sel_ms, sel_kb = scrape_ms(url)
                scrapes.append(
                    f"| {n} | {ms:.1f} | {kb:,.0f} | {mb:.1f} | {sel_ms:.1f} | {sel_kb:,.0f} |"
                )
                print(scrapes[-1], flush=True)
    consumers = ""
    if args.watched:
        print(f"{args.watched} watched series: building the store ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp, scratch_schema(args.database) as scratch:
            url = scratch or f"sqlite:///{Path(tmp) / 'bench.db'}"
            build_store(url, 1)
            ms = consumer_refresh_ms(url, args.watched)
        consumers = (
            "\n| watched series | days of anomaly scores each | consumer view refresh (ms) |\n"
            f"|---|---|---|\n| {args.watched} | {SCORE_DAYS} | {ms:.2f} |\n\n"
            "The API also refreshes its consumer view (newest anomaly score and bar of "
            "every watched series, recent regression events) every 2 s.\n"
        )
        print(consumers, flush=True)
    store = "PostgreSQL (a scratch schema)" if postgres else "SQLite (a temporary file)"
    flag = f" --database {args.database.split('://')[0]}://..." if args.database else ""
    text = (
        f"Command: `python -m benchmarks.view_refresh --series "
        f"{' '.join(map(str, args.series))} --watched {args.watched}"
        f"{'' if args.scrape else ' --no-scrape'}{flag}` "
        f"({platform.machine()}, {store}; "
        f"median of {ROUNDS} refreshes per row, each after an ingest wrote one "
        "observation to that many series).\n\n" + "\n".join(table) + "\n\n"
        "The first row of each count is the idle refresh the serving processes run "
        "every 1-2 s: one read of the change marker. The last column is the view's "
        "refresh reading every series row, as every refresh did before the marker, "
        "whether anything had changed or not.\n" + consumers
    )
    if args.scrape:
        text += (
            "\n" + "\n".join(scrapes) + "\n\n"
            f"`GET /metrics` answered by the API app in this process (FastAPI's test "
            f"client, no network) with every series loaded, median of {ROUNDS} "
            "scrapes; what the app keeps between two scrapes (tracemalloc, a separate "
            "run: the per-series lines of the forecast gauges) in the fourth column. The "
            f"last two: the same app asked for {SELECTED} series by name "
            "(`?series=...`, as a scrape job for the series a KEDA trigger uses).\n"
        )
    write_report(output, text)


if __name__ == "__main__":
    main()
