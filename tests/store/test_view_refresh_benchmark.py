"""``benchmarks/view_refresh.py`` on a tiny store: it runs and measures what it says."""

from __future__ import annotations

from pathlib import Path

from benchmarks.serving import build_store
from benchmarks.view_refresh import refresh_ms


def test_the_benchmark_times_each_case_on_a_tiny_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    build_store(url, 3)
    rows = refresh_ms(url, 3)
    assert [written for written, *_ in rows] == [0, 3]
    assert all(ms > 0 for _, *times in rows for ms in times)
