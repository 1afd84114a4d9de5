"""An ingest run writes a series' catalogue entry only when the spec changed it.

Each run registered every member again (a transaction per member: 2.5 s of a 6.8 s
ingest of 450 members on PostgreSQL), though nothing in the entry had changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forecaster.jobs.context import JobContext
from forecaster.jobs.ingest import ingest_series


def test_the_catalogue_entry_is_written_when_new_or_changed_only(
    tmp_path: Path,
    nab: Path,
    write_spec: Any,
    make_settings: Any,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def context(unit: str) -> tuple[JobContext, Any]:
        path = write_spec(
            tmp_path / "spec.yaml",
            [{"name": "taxi", "file": str(nab / "realKnownCause/nyc_taxi.csv"), "unit": unit}],
            step="30m",
            history="7d",
            horizon="6h",
        )
        ctx = JobContext.create(make_settings(db=db_url, spec=path))
        return ctx, ctx.select(None)[0]

    ctx, spec = context("rides/30min")
    writes: list[str] = []
    real = ctx.store.ensure_series

    def counted(**kwargs: Any) -> int:
        writes.append(kwargs["name"])
        return real(**kwargs)

    monkeypatch.setattr(ctx.store, "ensure_series", counted)
    first = ingest_series(ctx, spec=spec)
    assert writes == ["taxi"] and first.written["taxi"] > 0
    ingest_series(ctx, spec=spec)  # nothing in the entry changed: no write
    assert writes == ["taxi"]
    ctx.store.engine.dispose()

    ctx, spec = context("rides per 30 minutes")  # the spec's unit changed: written
    real = ctx.store.ensure_series
    monkeypatch.setattr(ctx.store, "ensure_series", counted)
    ingest_series(ctx, spec=spec)
    assert writes == ["taxi", "taxi"]
    assert ctx.store.series("taxi").unit == "rides per 30 minutes"
    ctx.store.engine.dispose()
