"""How the scheduler runs its jobs: ingest in a pool of its own, nothing new once stopping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forecaster import scheduler as scheduler_module
from forecaster.jobs.context import JobContext


def test_ingest_runs_in_its_own_pool(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any
) -> None:
    """A Prometheus that hangs holds ingest runs for their timeouts and retries; in the
    shared pool that stopped every publish (forecasts went stale) and admin request."""
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "elb", "file": str(nab / "realAWSCloudwatch/elb_request_count_8c0756.csv")}],
        history="3d",
        horizon="1h",
        estimators=["seasonal_naive"],
    )
    ctx = JobContext.create(make_settings(spec=spec))
    scheduler = scheduler_module.build_scheduler(ctx)
    try:
        executors = {job.id: job.executor for job in scheduler.get_jobs()}
        assert executors["ingest:elb"] == "ingest"
        assert {executors[j] for j in ("publish:elb", "train:elb", "requests")} == {"default"}
    finally:
        scheduler.shutdown(wait=False)
        ctx.store.engine.dispose()


def test_runs_queued_when_the_process_stops_are_dropped() -> None:
    """After SIGTERM a run still queued behind a slow one must not start (they did,
    and kept the process up for minutes)."""
    scheduler_module._STOPPING.set()
    try:
        # outside a running scheduler these would raise (no job context): they return
        scheduler_module.ingest_job("elb")
        scheduler_module.publish_job("elb")
        scheduler_module.requests_job()
    finally:
        scheduler_module._STOPPING.clear()
