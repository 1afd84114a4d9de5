"""``release_memory`` gives freed heap pages back to the OS (glibc's malloc_trim)."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

SCRIPT = """
import psutil
from forecaster.jobs.runner import release_memory

proc = psutil.Process()
blocks = [bytes(4000) for _ in range(60_000)]  # ~240 MB of malloc'd (not mmap'd) blocks
kept = blocks[::50]  # pins scattered blocks, so the heap top cannot simply shrink
del blocks
before = proc.memory_info().rss
assert release_memory()
after = proc.memory_info().rss
print(before // 2**20, after // 2**20, len(kept))
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
    reason="glibc only",
)
def test_freed_memory_is_returned_after_a_job() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], check=True, capture_output=True, text=True
    ).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert before - after > 150, (before, after)
