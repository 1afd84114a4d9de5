"""The scheduler's 2-second request poll does not warn when one poll overlaps the next."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from forecaster.scheduler import _QUIET_POLL


def _slow(release: threading.Event) -> None:
    release.wait(5)


def test_only_the_request_polls_skips_are_quiet(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("apscheduler.scheduler")
    logger.addFilter(_QUIET_POLL)
    release = threading.Event()
    scheduler = BackgroundScheduler(job_defaults={"max_instances": 1, "coalesce": True})
    try:
        with caplog.at_level(logging.WARNING, logger="apscheduler.scheduler"):
            scheduler.start()
            for name in ("requests", "publish:web"):  # both overrun their 0.2 s interval
                scheduler.add_job(
                    _slow, IntervalTrigger(seconds=0.2), args=[release], id=name, name=name
                )
            deadline = time.monotonic() + 10
            while "publish:web" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        release.set()
        scheduler.shutdown(wait=True)
        logger.removeFilter(_QUIET_POLL)
    skipped = [r.getMessage() for r in caplog.records if "maximum number" in r.getMessage()]
    assert any(m.startswith('Execution of job "publish:web ') for m in skipped)
    assert not any(m.startswith('Execution of job "requests ') for m in skipped)
