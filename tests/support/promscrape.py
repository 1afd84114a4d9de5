"""A real Prometheus that scrapes given loopback targets, for tests.

Usage::

    with scraping_prometheus(tmp_path, {"demo": ["127.0.0.1:8080"]}) as prom:
        wait_for_query(prom.url, 'rate(http_requests_total[1m])', lambda r: bool(r))

The server starts on a free 127.0.0.1 port with an empty TSDB and a config whose
only scrape jobs are the given ones (1 s scrape interval by default); it is stopped
when the block exits. Process handling is shared with :mod:`tests.support.promserver`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promserver import PROMETHEUS, RETENTION, PromServer, _start, _stop


@contextlib.contextmanager
def scraping_prometheus(
    tmp_path: Path,
    jobs: Mapping[str, list[str]],
    *,
    scrape_interval: str = "1s",
    ready_timeout: float = 30.0,
    params: Mapping[str, Mapping[str, list[str]]] | None = None,
) -> Iterator[PromServer]:
    """Run Prometheus scraping ``jobs`` (job name -> ``host:port`` targets on loopback).

    Args:
        tmp_path: A private folder (TSDB, config and log go in ``tmp_path/prometheus``).
        jobs: Scrape jobs; every target must be a loopback address.
        scrape_interval: Prometheus duration between scrapes.
        ready_timeout: Seconds to wait for ``/-/ready``.
        params: Per job name, the query parameters of its scrapes (``params:``).

    Yields:
        The running server (its ``url`` is ``http://127.0.0.1:<port>``).
    """
    if shutil.which(PROMETHEUS) is None:
        pytest.fail(f"{PROMETHEUS} is not installed (Debian package 'prometheus')")
    for targets in jobs.values():
        for target in targets:
            host = target.rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "localhost", "[::1]"):
                raise ValueError(f"scrape target {target!r} is not on loopback")
    home = tmp_path / "prometheus"
    tsdb = home / "tsdb"
    tsdb.mkdir(parents=True, exist_ok=False)
    config = home / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": scrape_interval, "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": name,
                        "scrape_interval": scrape_interval,
                        "scrape_timeout": scrape_interval,
                        "static_configs": [{"targets": list(targets)}],
                        **({"params": dict(params[name])} if params and name in params else {}),
                    }
                    for name, targets in jobs.items()
                ],
            },
            sort_keys=False,
        )
    )
    log_path = home / "prometheus.log"
    process, port = _start(config, tsdb, log_path, ready_timeout)
    try:
        yield PromServer(f"http://127.0.0.1:{port}", port, tsdb, log_path)
    finally:
        _stop(process)


def instant_query(
    url: str, promql: str, *, timeout: float = 5.0, at: float | None = None
) -> list[dict[str, Any]]:
    """Evaluate ``promql`` on the Prometheus at ``url`` now (or at Unix time ``at``);
    returns ``data.result``."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    query = urllib.parse.urlencode({"query": promql, **({} if at is None else {"time": at})})
    with opener.open(f"{url}/api/v1/query?{query}", timeout=timeout) as answer:
        body = json.loads(answer.read())
    if body.get("status") != "success":
        raise RuntimeError(f"query {promql!r} failed: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for_query(
    url: str,
    promql: str,
    accept: Callable[[list[dict[str, Any]]], bool],
    *,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Poll ``promql`` until ``accept(result)``; fail with the last result after ``timeout``."""
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = instant_query(url, promql)
        if accept(result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{promql!r} not accepted after {timeout}s; last result: {result}")


__all__ = ["RETENTION", "instant_query", "scraping_prometheus", "wait_for_query"]
