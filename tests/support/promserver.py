"""A real Prometheus for tests: backfill given series with promtool, serve them on loopback.

Usage::

    with running_prometheus(tmp_path, {'rps{route="/a"}': series}) as prom:
        PrometheusSource(PrometheusSettings(url=prom.url)).fetch(...)

or, as a fixture shared by a module (``make_prometheus_fixture``), or per test
(the ``prometheus_factory`` fixture; re-export it from a conftest with
``from tests.support.promserver import prometheus_factory``).

How it works: the series are written as OpenMetrics text (one ``# TYPE <name>
unknown`` family per metric name, samples sorted by time, ``# EOF``), turned into
TSDB blocks by ``promtool tsdb create-blocks-from openmetrics`` (2 h blocks) in a
fresh ``--storage.tsdb.path``, and ``/usr/bin/prometheus`` is started on a free
127.0.0.1 port with a config that has no scrape targets. The context manager waits
for ``/-/ready`` and stops the server on exit (SIGTERM, then SIGKILL after 10 s).

Time range rules (Prometheus 2.42, checked):

* Samples older than ``--storage.tsdb.retention.time`` (measured from the newest
  block) are deleted at start-up; the harness uses 3650 days, and traces should be
  shifted with :func:`shift_to_end_at` so they end near "now" anyway.
* Backfilling data right up to "now" works with promtool/prometheus 2.42 because
  the TSDB is fresh: there is no head block (no WAL, no scrape targets) for the
  blocks to overlap, and overlapping blocks are allowed by default since 2.39.
  The Prometheus docs' warning about the last ~3 h applies to backfilling a TSDB
  whose *running* head already holds those hours. promtool writes 2 h blocks
  (~170 for a 14-day trace, about 3 s); the server compacts them later in the
  background (it has not disturbed queries in these tests). Timestamps in the future are
  rejected with ``ValueError``: retention is measured from the newest block and
  queries at "now" would not see them.
* Queries see a sample for 5 minutes after its timestamp (the lookback delta); a
  range query evaluated exactly at sample timestamps returns each sample once.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import pandas as pd

PROMETHEUS = os.environ.get("FORECASTER_TEST_PROMETHEUS_BIN", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("FORECASTER_TEST_PROMTOOL_BIN", "/usr/bin/promtool")
RETENTION = "3650d"

_SERIES_KEY = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{.*\})?$")
_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


@dataclass(frozen=True)
class PromServer:
    """A running test Prometheus.

    Attributes:
        url: Base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash).
        port: The loopback port it listens on.
        tsdb_path: Its ``--storage.tsdb.path``.
        log_path: Its combined stdout/stderr log.
    """

    url: str
    port: int
    tsdb_path: Path
    log_path: Path


def shift_to_end_at(series: pd.Series, end: datetime | pd.Timestamp) -> pd.Series:
    """Shift ``series`` in time, keeping its spacing, so its last timestamp is ``end``.

    Args:
        series: Values indexed by a DatetimeIndex (naive is taken as UTC).
        end: The new last timestamp (naive is taken as UTC).

    Returns:
        A copy indexed by tz-aware UTC timestamps, sorted.
    """
    import pandas as pd

    if series.empty:
        raise ValueError("cannot shift an empty series")
    index = pd.DatetimeIndex(series.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    target = pd.Timestamp(end)
    target = target.tz_localize("UTC") if target.tz is None else target.tz_convert("UTC")
    shifted = pd.Series(series.to_numpy(), index=index + (target - index.max()), name=series.name)
    return shifted.sort_index()


def write_openmetrics(series: Mapping[str, pd.Series], path: Path) -> Path:
    """Write ``series`` (``'metric{label="v"}'`` -> values on a UTC index) as OpenMetrics text.

    NaN is written as ``NaN`` and infinities as ``+Inf`` / ``-Inf``; timestamps are
    Unix seconds with millisecond precision.

    Raises:
        ValueError: On a malformed key, a duplicate label set or a future timestamp.
    """
    import pandas as pd

    families: dict[str, list[tuple[str, pd.Series]]] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    now = pd.Timestamp.now(tz="UTC")
    for key, values in series.items():
        match = _SERIES_KEY.match(key.strip())
        if match is None:
            raise ValueError(f"series key {key!r} is not like 'metric' or 'metric{{label=\"v\"}}'")
        name = match.group("name")
        labels = _parse_labels(match.group("labels") or "", key)
        identity = (name, tuple(sorted(labels.items())))
        if identity in seen:
            raise ValueError(f"series key {key!r} repeats a label set")
        seen.add(identity)
        index = pd.DatetimeIndex(values.index)
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        if len(index) and index.max() > now:
            raise ValueError(f"series {key!r} has samples in the future ({index.max()})")
        label_text = (
            "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"
            if labels
            else ""
        )
        ordered = pd.Series(values.to_numpy(dtype=float), index=index).sort_index()
        families.setdefault(name, []).append((name + label_text, ordered))
    lines: list[str] = []
    for name, members in families.items():
        lines.append(f"# TYPE {name} unknown")
        for sample_name, values in members:
            stamps_ms = pd.DatetimeIndex(values.index).as_unit("ms").asi8
            for stamp_ms, value in zip(stamps_ms, values.to_numpy(), strict=True):
                lines.append(f"{sample_name} {_format_value(value)} {_format_stamp(int(stamp_ms))}")
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def running_prometheus(
    tmp_path: Path,
    series: Mapping[str, pd.Series],
    *,
    ready_timeout: float = 30.0,
    flags: Sequence[str] = (),
    config: str = "",
) -> Iterator[PromServer]:
    """Backfill ``series`` into a fresh TSDB under ``tmp_path`` and serve it on loopback.

    Args:
        tmp_path: A private folder (the TSDB, config and log go in ``tmp_path/prometheus``).
        series: ``'metric{label="v"}'`` -> float values on a tz-aware UTC index. May be
            empty (a Prometheus with no data).
        ready_timeout: Seconds to wait for ``/-/ready``.
        flags: Extra command-line flags for ``prometheus`` (``--query.max-samples=...``).
        config: Extra top-level sections of ``prometheus.yml`` (``remote_read: ...``).

    Yields:
        The running server; it is stopped when the block exits.

    Raises:
        RuntimeError: If promtool fails or Prometheus does not become ready (the
            message includes the tail of its log).
    """
    for tool in (PROMETHEUS, PROMTOOL):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (Debian package 'prometheus')")
    home = tmp_path / "prometheus"
    tsdb = home / "tsdb"
    tsdb.mkdir(parents=True, exist_ok=False)
    if series:
        source = write_openmetrics(series, home / "backfill.om")
        done = subprocess.run(
            [
                PROMTOOL,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--quiet",
                str(source),
                str(tsdb),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"promtool backfill failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
            )
    config_path = home / "prometheus.yml"
    config_path.write_text("global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n" + config)
    log_path = home / "prometheus.log"
    process, port = _start(config_path, tsdb, log_path, ready_timeout, flags)
    try:
        yield PromServer(f"http://127.0.0.1:{port}", port, tsdb, log_path)
    finally:
        _stop(process)


def make_prometheus_fixture(
    series_factory: Callable[[], Mapping[str, pd.Series]],
    *,
    scope: Any = "module",
) -> Any:
    """A pytest fixture serving ``series_factory()`` from one Prometheus per ``scope``.

    Example (in a test module or conftest)::

        prometheus = make_prometheus_fixture(lambda: {"up": trace}, scope="module")

        def test_up(prometheus: PromServer) -> None: ...
    """

    @pytest.fixture(scope=scope)
    def _prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromServer]:
        with running_prometheus(tmp_path_factory.mktemp("prom"), series_factory()) as server:
            yield server

    return _prometheus


@pytest.fixture
def prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[Mapping[str, pd.Series]], PromServer]]:
    """``prometheus_factory(series) -> PromServer``: servers stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(series: Mapping[str, pd.Series]) -> PromServer:
            folder = tmp_path_factory.mktemp("prom")
            return stack.enter_context(running_prometheus(folder, series))

        yield start


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- internals -----------------------------------------------------------------------


def _parse_labels(text: str, key: str) -> dict[str, str]:
    if not text:
        return {}
    inner = text[1:-1]
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(inner):
        match = _LABEL_PAIR.match(inner, pos)
        if match is None:
            raise ValueError(f"series key {key!r}: cannot parse labels at {inner[pos:]!r}")
        labels[match.group(1)] = match.group(2).replace('\\"', '"').replace("\\\\", "\\")
        pos = match.end()
    return labels


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _format_stamp(stamp_ms: int) -> str:
    seconds, millis = divmod(int(stamp_ms), 1000)
    return f"{seconds}.{millis:03d}" if millis else str(seconds)


def _start(
    config: Path, tsdb: Path, log_path: Path, ready_timeout: float, flags: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], int]:
    """Start Prometheus on a free port; retry with another port if it exits early."""
    problems: list[str] = []
    for _ in range(3):
        port = free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tsdb}",
                    f"--storage.tsdb.retention.time={RETENTION}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                    *flags,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=config.parent,
            )
        if _wait_ready(process, port, ready_timeout):
            return process, port
        _stop(process)
        problems.append(f"port {port}: exit code {process.returncode}")
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"Prometheus did not become ready ({'; '.join(problems)}); log:\n{tail}")


def _wait_ready(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with opener.open(f"http://127.0.0.1:{port}/-/ready", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def utc_now_floor(step_seconds: int) -> datetime:
    """The current time rounded down to a multiple of ``step_seconds`` (UTC)."""
    now = int(time.time())
    return datetime.fromtimestamp(now - now % step_seconds, UTC)
