"""Output paths of the file commands: refused before the work, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from forecaster.commands import backtest, detect, simulate
from forecaster.errors import InputDataError
from forecaster.outputs import check_output, replace_atomically, write_report

NAB = Path(__file__).resolve().parents[2] / "data" / "nab"
TRACE = NAB / "realTweets" / "Twitter_volume_GOOG.csv"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """The three commands, with their long-running work replaced by a tripwire."""

    def tripwire(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the work started although the output cannot be written")

    monkeypatch.setattr("forecaster.evaluation.backtest", tripwire)
    monkeypatch.setattr("forecaster.commands.simulate.simulate", tripwire)
    monkeypatch.setattr("forecaster.consumers.regressions.detect_history", tripwire)
    app = typer.Typer()
    for command in (backtest, simulate, detect):
        command.register(app)

    @app.callback()
    def main() -> None:
        """Test app."""

    return app


COMMANDS = {
    "backtest": ["backtest", str(TRACE), "--model", "seasonal_naive"],
    "simulate": ["simulate", str(TRACE), "--capacity", "50"],
    "detect": ["detect", str(TRACE)],
}


@pytest.mark.parametrize("command", ["backtest", "simulate", "detect"])
@pytest.mark.parametrize(
    ("option", "make", "message"),
    [
        ("--output", lambda tmp: tmp, "is a directory; give a file name"),
        ("--output", lambda tmp: tmp / "file.txt" / "out.csv", "cannot write there"),
        ("--plot", lambda tmp: tmp / "plot.txt", "cannot write a plot as 'txt'"),
        ("--plot", lambda tmp: tmp / "plot", "without a suffix"),
        ("--plot", lambda tmp: tmp, "is a directory"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_the_work(
    app: typer.Typer, tmp_path: Path, command: str, option: str, make: Any, message: str
) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    args = [*COMMANDS[command], option, str(make(tmp_path))]
    if option == "--plot" and command != "simulate":  # --output is required there
        args += ["--output", str(tmp_path / "ok.csv")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"{option} " in result.output and message in result.output
    assert "the work started" not in result.output


def test_detect_scores_path_is_checked_too(app: typer.Typer, tmp_path: Path) -> None:
    args = [*COMMANDS["detect"], "--output", str(tmp_path / "e.csv"), "--scores", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "--scores" in result.output
    assert "is a directory" in result.output


@pytest.mark.parametrize("command", ["backtest", "simulate", "detect"])
def test_an_output_over_the_input_is_refused_and_the_input_kept(
    app: typer.Typer, tmp_path: Path, command: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(TRACE.read_bytes())
    link = tmp_path / "link.csv"
    link.symlink_to(source)
    for target in (source, link):
        args = [command, str(source), *COMMANDS[command][2:], "--output", str(target)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        assert f"--output {target}: is the input" in result.output
        assert "the work started" not in result.output
    assert source.read_bytes() == TRACE.read_bytes()


@pytest.mark.parametrize(
    ("command", "extra", "message"),
    [
        ("detect", ["--scores", "{out}"], "--scores {out}: is also --output"),
        ("simulate", ["--plot", "{out}"], "--plot {out}: is also --output"),
        ("backtest", ["--plot", "{out}"], "--plot {out}: is also --output"),
    ],
)
def test_two_outputs_on_one_path_are_refused(
    app: typer.Typer, tmp_path: Path, command: str, extra: list[str], message: str
) -> None:
    out = tmp_path / "out.png"
    args = [*COMMANDS[command], "--output", str(out), *(a.format(out=out) for a in extra)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert message.format(out=out) in result.output
    assert not out.exists()


def test_check_output_leaves_nothing_behind(tmp_path: Path) -> None:
    """Folders still missing are created by the write, so a run refused later (bad
    input) leaves no empty folders."""
    target = tmp_path / "new" / "deeper" / "out.csv"
    check_output(target, "--output")
    assert list(tmp_path.iterdir()) == []
    replace_atomically(target, lambda path: path.write_text("x"))
    assert target.read_text() == "x"
    check_output(None, "--output")  # no output asked for: nothing to check
    check_output(tmp_path / "plot.svg", "--plot", image=True)
    with pytest.raises(InputDataError, match="--plot"):
        check_output(tmp_path / "plot.docx", "--plot", image=True)


def test_replace_atomically_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")

    def half_written(path: Path) -> None:
        path.write_text("new but trunc")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomically(target, half_written)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no scratch file left
    replace_atomically(target, lambda path: path.write_text("new"))
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_write_report_creates_the_folder_and_prints_the_report_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "results" / "bench.md"

    write_report(target, "| a |\n|---|\n")
    write_report(tmp_path / "quiet.md", "no newline", show=False)

    assert target.read_text() == "| a |\n|---|\n"
    assert (tmp_path / "quiet.md").read_text() == "no newline"
    assert capsys.readouterr().out == "| a |\n|---|\n"


def test_replaced_files_get_an_ordinary_files_mode(tmp_path: Path) -> None:
    """Not the scratch file's private 0600: the umask's default for a new file, an
    existing file's own mode when it is replaced."""
    import os

    old_umask = os.umask(0o022)
    try:
        new = tmp_path / "new.csv"
        replace_atomically(new, lambda path: path.write_text("x"))
        assert new.stat().st_mode & 0o777 == 0o644
        shared = tmp_path / "shared.csv"
        shared.write_text("old")
        shared.chmod(0o664)
        replace_atomically(shared, lambda path: path.write_text("new"))
        assert shared.stat().st_mode & 0o777 == 0o664 and shared.read_text() == "new"
    finally:
        os.umask(old_umask)


def test_a_symlinked_output_is_written_through(tmp_path: Path) -> None:
    target = tmp_path / "shared" / "target.csv"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    replace_atomically(link, lambda path: path.write_text("new"))
    assert link.is_symlink() and target.read_text() == "new"


def test_a_run_refused_for_its_input_creates_no_output_folder(tmp_path: Path) -> None:
    app = typer.Typer()
    backtest.register(app)

    @app.callback()
    def main() -> None:
        """Test app."""

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    out = tmp_path / "newdir" / "sub" / "x.csv"
    result = CliRunner().invoke(app, ["backtest", str(empty), "--output", str(out)])
    assert result.exit_code == 1 and "empty" in result.output
    assert not (tmp_path / "newdir").exists()


def test_a_pipe_or_device_is_written_into_not_replaced(tmp_path: Path) -> None:
    """``-o /dev/null`` run as root renamed the scratch file over the device (a regular
    file took its place); ``-o /dev/stdout | cat`` did all the work and then failed to
    rename into /proc. A named pipe stands in for both here."""
    import os
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "stdout"  # /dev/stdout is a symlink to the process's pipe
    link.symlink_to(fifo)
    for target in (fifo, link):
        check_output(target, "--output")
        received: list[bytes] = []
        reader = threading.Thread(target=lambda into=received: into.append(fifo.read_bytes()))
        reader.start()
        replace_atomically(target, lambda scratch: scratch.write_text("origin,ds\n"))
        reader.join(timeout=10)
        assert received == [b"origin,ds\n"]
        assert stat.S_ISFIFO(fifo.stat().st_mode) and link.is_symlink()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
