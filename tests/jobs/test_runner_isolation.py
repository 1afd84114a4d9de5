"""One series crashing with an unexpected error (a bug, an unforeseen input) does not
stop the job for the other series: it is logged, recorded and the run goes on.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from forecaster.jobs.context import JobContext
from forecaster.jobs.runner import run_ingest, run_publish, run_train
from forecaster.sources.replay import FileSource
from forecaster.specs import SeriesSpec

pytestmark = pytest.mark.integration


@pytest.fixture
def ctx(make_settings: Any, write_spec: Any, nab: Path, tmp_path: Path) -> Any:
    trace = str(nab / "realAWSCloudwatch" / "elb_request_count_8c0756.csv")
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "a", "file": trace}, {"name": "b", "file": trace}],
        history="3d",
        horizon="1h",
        estimators=["seasonal_naive"],
    )
    context = JobContext.create(make_settings(spec=spec))
    yield context
    context.store.engine.dispose()


def test_an_unexpected_error_in_one_series_does_not_stop_the_others(
    ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = ctx.select(None)
    real_fetch = FileSource.fetch

    def fetch(self: FileSource, spec: SeriesSpec, start: datetime, end: datetime) -> Any:
        if spec.name == "a":
            raise RuntimeError("boom in a")
        return real_fetch(self, spec, start, end)

    with monkeypatch.context() as patch:
        patch.setattr(FileSource, "fetch", fetch)
        ingested = run_ingest(ctx, specs)
    assert ingested.errors == {"a": "crashed: RuntimeError: boom in a"}
    assert [r.family for r in ingested.results] == ["b"]
    assert ctx.store.count_observations("b") > 0

    assert run_ingest(ctx, specs).ok
    assert run_train(ctx, specs).ok

    import forecaster.jobs.publish as publish

    real_history = publish.history_frame

    def history(ctx_: Any, *, name: str, **kwargs: Any) -> Any:
        if name == "a":
            raise ValueError("corrupt state")
        return real_history(ctx_, name=name, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(publish, "history_frame", history)
        published = run_publish(ctx, specs)
    assert published.errors == {"a": "crashed: ValueError: corrupt state"}
    assert [r.series for r in published.results] == ["b"]
    assert ctx.store.latest_forecast("b").points

    runs = [(r["job"], r["series"], r["ok"], r["detail"]) for r in ctx.store.last_job_runs()]
    assert ("ingest", "a", False, "crashed: RuntimeError: boom in a") in runs
    assert ("publish", "a", False, "crashed: ValueError: corrupt state") in runs
