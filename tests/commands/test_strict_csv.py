"""``--strict`` on every command that reads a CSV: unsorted or repeated rows refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from forecaster.commands import backtest, detect, simulate

UNSORTED = "timestamp,value\n2024-01-01 00:05,2\n2024-01-01 00:00,1\n2024-01-01 00:10,3\n"
REPEATED = "timestamp,value\n2024-01-01 00:00,2\n2024-01-01 00:05,1\n2024-01-01 00:05,3\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (UNSORTED, "row 3: timestamp 2024-01-01T00:00:00+00:00 is earlier than the row before"),
        (REPEATED, "rows 3 and 4 share the timestamp 2024-01-01T00:05:00+00:00"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["backtest", "--output", "{out}"],
        ["simulate", "--capacity", "10", "--output", "{out}"],
        ["detect", "--output", "{out}"],
    ],
)
def test_strict_refuses_and_writes_nothing(
    tmp_path: Path, command: list[str], content: str, message: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(content)
    out = tmp_path / "out"
    args = [command[0], str(source), *(a.format(out=out) for a in command[1:]), "--strict"]
    app = typer.Typer()
    for module in (backtest, detect, simulate):
        module.register(app)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"in.csv: {message}" in result.output
    assert not out.exists()
