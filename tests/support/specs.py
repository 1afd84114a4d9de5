"""Pipeline specs several test modules write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ELB = "realAWSCloudwatch/elb_request_count_8c0756.csv"


def elb_spec(tmp_path: Path, nab: Path, write_spec: Any) -> Path:
    """A spec of one series, ``elb``, replayed from the bundled ELB trace."""
    return Path(
        write_spec(
            tmp_path / "spec.yaml",
            [{"name": "elb", "file": str(nab / ELB)}],
            history="3d",
            horizon="1h",
            estimators=["seasonal_naive"],
        )
    )
