"""The ``backtest`` command on a throwaway Typer app: contract, output and bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from forecaster.commands import backtest as backtest_command

NAB = Path(__file__).resolve().parents[2] / "data" / "nab"
ELB = NAB / "realAWSCloudwatch" / "elb_request_count_8c0756.csv"
HEADER = "origin,ds,step,yhat,yhat_lower,yhat_upper,model"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    backtest_command.register(app)

    @app.callback()
    def main() -> None:
        """Test app."""

    return app


def _run(app: typer.Typer, *args: str) -> object:
    return CliRunner().invoke(app, ["backtest", *map(str, args)])


def _outputs(app: typer.Typer, inputs: list[Path], *args: str) -> list[pd.DataFrame]:
    """The backtest CSV of each of ``inputs`` (written beside it) with ``args``."""
    frames = []
    for csv in inputs:
        out = csv.with_suffix(".out.csv")
        result = _run(app, csv, *args, "--output", out)
        assert result.exit_code == 0, result.output
        frames.append(pd.read_csv(out))
    return frames


def test_writes_contract_csv_and_summary(app, tmp_path):
    out = tmp_path / "out.csv"
    plot = tmp_path / "out.png"
    result = _run(
        app, ELB, "--model", "seasonal_naive", "--horizon", "24", "--origins", "3",
        "--stride", "12", "--output", out, "--plot", plot,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[0] == HEADER
    frame = pd.read_csv(out)
    assert len(frame) == 72
    assert frame["step"].tolist()[:24] == list(range(1, 25))
    assert frame["origin"].iloc[0].endswith("Z")
    assert plot.stat().st_size > 10_000
    assert "MASE" in result.output and "coverage" in result.output and "seconds" in result.output


def test_ds_y_header_and_other_freq(app, tmp_path):
    source = pd.read_csv(ELB).rename(columns={"timestamp": "ds", "value": "y"})
    csv = tmp_path / "dsy.csv"
    source.to_csv(csv, index=False)
    out = tmp_path / "out.csv"
    result = _run(
        app, csv, "--freq", "1h", "--horizon", "24", "--origins", "2", "--model", "auto",
        "--output", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert len(frame) == 48
    assert frame["model"].str.startswith("auto:").all()
    stamps = pd.to_datetime(frame["ds"], utc=True)
    assert (stamps.dt.minute == 0).all()


def test_a_grid_finer_than_the_data_is_warned_about_and_keeps_its_fractions(app, tmp_path, caplog):
    """A 1.5 s grid on 5-minute data: 99% of it empty (said), and the stamps written
    with their fractions of a second (they were cut to whole seconds)."""
    source = pd.read_csv(ELB).tail(400)
    csv = tmp_path / "short.csv"
    source.to_csv(csv, index=False)
    out = tmp_path / "out.csv"
    result = _run(
        app, csv, "--freq", "1500ms", "--horizon", "3", "--origins", "1",
        "--model", "last_value", "--history", "1d", "--output", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "--freq 1s500ms is finer than the data's own step (5m): 99% of the grid" in caplog.text
    ds = pd.read_csv(out)["ds"]
    steps = pd.to_datetime(ds, utc=True).diff().dropna()
    assert (steps == pd.Timedelta("1500ms")).all() and ds.str.endswith("Z").all()
    # a whole-second grid keeps whole-second stamps
    plain = tmp_path / "plain.csv"
    assert (
        _run(
            app, ELB, "--horizon", "2", "--origins", "1", "--model", "last_value", "--output", plain
        ).exit_code
        == 0
    )
    assert pd.read_csv(plain)["ds"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()


def test_unparseable_file(app, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\nyesterday-ish,3\nnot a time,4\n")
    result = _run(app, bad, "--output", tmp_path / "o.csv")
    assert result.exit_code != 0
    assert "cannot parse timestamp" in result.output
    assert not (tmp_path / "o.csv").exists()


def test_not_a_number(app, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2024-01-01T00:00:00Z,abc\n")
    result = _run(app, bad, "--output", tmp_path / "o.csv")
    assert result.exit_code != 0
    assert "is not a number" in result.output


def test_too_little_history(app, tmp_path):
    result = _run(app, ELB, "--origins", "60", "--output", tmp_path / "o.csv")
    assert result.exit_code != 0
    assert "too little history" in result.output


def test_a_history_window_of_one_step_is_refused(app, tmp_path):
    out = tmp_path / "o.csv"
    result = _run(
        app, ELB, "--model", "seasonal_naive", "--history", "5m", "--output", out,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "--history 5m is shorter than two steps of --freq 5min" in result.output
    assert not out.exists()


def test_unknown_model(app, tmp_path):
    result = _run(app, ELB, "--model", "arima", "--output", tmp_path / "o.csv")
    assert result.exit_code != 0
    assert "unknown model 'arima'" in result.output


@pytest.mark.parametrize(
    ("freq", "step"), [("5T", "5min"), ("1H", "1h"), ("90S", "90s"), ("5min", "5min")]
)
def test_pandas_old_frequency_aliases_are_read(freq, step):
    """pandas 3 refuses '5T' and '1H'; the help promised them."""
    from datetime import timedelta

    assert backtest_command.parse_freq(freq) == pd.Timedelta(step).to_pytimedelta()
    assert isinstance(backtest_command.parse_freq(freq), timedelta)


def test_bad_freq(app, tmp_path):
    result = _run(app, ELB, "--freq", "often", "--output", tmp_path / "o.csv")
    assert result.exit_code != 0
    assert "--freq" in result.output


@pytest.mark.parametrize(
    ("freq", "message"),
    [
        ("nan", "--freq: cannot parse 'nan'"),
        ("NaT", "--freq: cannot parse 'NaT'"),
        ("1ns", "--freq: must be at least 1s, got '1ns'"),
        ("500ms", "--freq: must be at least 1s, got '500ms'"),
        ("-5min", "--freq: must be positive"),
        # pandas read these as 300 ns and 2 h; they are refused as the durations are
        ("300", "a number needs a unit, e.g. '300s'"),
        ("1h1h", "give each unit once"),
        ("1M", "--freq: cannot parse '1M'"),
    ],
)
def test_a_freq_that_is_not_a_usable_step_is_a_clear_error(app, tmp_path, freq, message):
    out = tmp_path / "o.csv"
    result = _run(app, ELB, "--freq", freq, "--model", "seasonal_naive", "--output", out)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not out.exists()


@pytest.mark.parametrize(
    ("level", "message"),
    [
        ("nan", "'nan' is not a number"),
        ("abc", "'abc' is not a number"),
        ("100", "100 is not between 1 and 99.9"),
        ("0.5", "0.5 is not between 1 and 99.9"),
    ],
)
def test_a_level_that_is_no_percentage_is_named(app, tmp_path, level, message):
    out = tmp_path / "o.csv"
    result = _run(app, ELB, "--level", level, "--model", "seasonal_naive", "--output", out)
    assert result.exit_code == 2, result.output
    assert "--level" in result.output and message in result.output
    assert not out.exists()


MACHINE_TEMPERATURE = NAB / "realKnownCause" / "machine_temperature_system_failure.csv"


def test_real_file_with_repeated_and_unsorted_rows(app, tmp_path):
    """NAB's own export has both; the default sorts/averages, --strict refuses."""
    out = tmp_path / "o.csv"
    result = _run(
        app, MACHINE_TEMPERATURE, "--model", "seasonal_naive", "--horizon", "12",
        "--origins", "2", "--output", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 24

    strict_out = tmp_path / "strict.csv"
    result = _run(
        app, MACHINE_TEMPERATURE, "--model", "seasonal_naive", "--horizon", "12",
        "--origins", "2", "--output", strict_out, "--strict",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "machine_temperature_system_failure.csv: row " in result.output
    assert "out of time order" in result.output and "without --strict" in result.output
    assert not strict_out.exists()


def test_the_summary_names_the_models_by_origins_on_one_line():
    import pandas as pd

    from forecaster.commands.backtest import models_used

    names = ["auto:lightgbm"] * 3 + ["auto:blend(a:0.7+b:0.3)"] * 2
    names += [f"auto:blend(a:0.{i}+b:0.{10 - i})" for i in range(1, 5)]
    # two forecast rows per origin: counted once
    frame = pd.DataFrame(
        {"origin": [o for o in range(len(names)) for _ in (1, 2)]},
    ).assign(model=[n for n in names for _ in (1, 2)])
    assert models_used(frame) == (
        "auto:lightgbm x3, auto:blend(a:0.7+b:0.3) x2, auto:blend(a:0.1+b:0.9) x1 and 3 more"
    )
    assert models_used(frame.iloc[:6]) == "auto:lightgbm x3"
    every = models_used(frame, shown=None)
    assert every.count(" x1") == 4 and "more" not in every


def test_a_constant_series_reports_mase_as_not_available(app, tmp_path):
    index = pd.date_range("2024-01-01", periods=288 * 3, freq="5min")
    flat = tmp_path / "flat.csv"
    pd.DataFrame({"timestamp": index, "value": 7.0}).to_csv(flat, index=False)
    result = _run(
        app, flat, "--model", "seasonal_naive", "--horizon", "12", "--origins", "2",
        "--output", tmp_path / "out.csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "MASE n/a" in result.output and "nan" not in result.output
    assert "did not vary" in result.output


AAPL = NAB / "realTweets" / "Twitter_volume_AAPL.csv"


def test_origins_and_ds_are_on_the_inputs_own_grid(app, tmp_path):
    """The contract: ``origin`` and ``ds`` are on the input's grid. The grid was
    anchored at the epoch, so on the tweet counts (2 min 53 s past each 5-minute mark) not
    one ``ds`` was an input timestamp and a join on ``ds`` found nothing."""
    out = tmp_path / "out.csv"
    result = _run(
        app, AAPL, "--model", "seasonal_naive", "--horizon", "12", "--origins", "3",
        "--output", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    source = pd.read_csv(AAPL)
    stamps = set(pd.to_datetime(source["timestamp"], utc=True))
    assert set(pd.to_datetime(frame["ds"], utc=True)) <= stamps
    assert set(pd.to_datetime(frame["origin"], utc=True)) <= stamps
    assert frame["ds"].iloc[0].endswith(":53Z")


def test_a_few_seconds_of_jitter_keep_every_row(app, tmp_path):
    """Rows a few seconds either side of the 5-minute marks: epoch bins left a quarter
    of the grid empty and averaged neighbours together, with exit 0 and no warning."""
    import numpy as np

    source = pd.read_csv(ELB).iloc[:2000]
    stamps = pd.to_datetime(source["timestamp"]).dt.floor("5min")  # on the 5-minute marks
    source = source.assign(timestamp=stamps)
    jitter = np.random.default_rng(0).integers(-3, 4, len(stamps))
    clean = tmp_path / "clean.csv"
    jittered = tmp_path / "jittered.csv"
    source.to_csv(clean, index=False)
    source.assign(timestamp=stamps + pd.to_timedelta(jitter, unit="s")).to_csv(
        jittered, index=False
    )
    args = ("--model", "seasonal_naive", "--horizon", "12", "--origins", "4")
    frames = _outputs(app, [clean, jittered], *args)
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_rows_without_a_value_at_the_end_stay_on_the_grid(app, tmp_path):
    """The contract counts origins back from the end of the resampled grid; empty rows
    at the end were dropped, which moved every origin (warned, but off contract)."""
    source = pd.read_csv(ELB).iloc[:1500]
    full = tmp_path / "full.csv"
    blanked = tmp_path / "blanked.csv"
    source.to_csv(full, index=False)
    source.assign(value=source["value"].where(source.index < len(source) - 2)).to_csv(
        blanked, index=False
    )
    args = ("--model", "seasonal_naive", "--horizon", "12", "--origins", "2")
    origins = [sorted(set(f["origin"])) for f in _outputs(app, [full, blanked], *args)]
    assert origins[0] == origins[1]


def test_the_model_column_says_when_a_seasonal_naive_repeated_the_last_value(app, tmp_path):
    """Weekly seasonal naive on 4.3 days of data is a last-value forecast: the rows
    and the summary said seasonal_naive_weekly all the same."""
    short = NAB / "realAWSCloudwatch" / "iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"
    out = tmp_path / "out.csv"
    result = _run(
        app, short, "--model", "seasonal_naive_weekly", "--horizon", "288", "--origins", "2",
        "--output", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(out)["model"]) == {"seasonal_naive_weekly:last_value"}
    assert "seasonal_naive_weekly:last_value" in result.output


def test_a_history_shorter_than_a_day_says_how_mase_is_scaled(app, tmp_path):
    out = tmp_path / "out.csv"
    args = ("--model", "seasonal_naive", "--horizon", "12", "--origins", "2")
    for window in ("12h", "1d"):  # a window of exactly a day is one-step scaled too
        result = _run(app, ELB, *args, "--history", window, "--output", out)
        assert result.exit_code == 0, result.output
        assert f"MASE is scaled by the one-step naive's in-sample error: --history {window}" in (
            result.output
        )
    result = _run(app, ELB, *args, "--output", out)  # the default 28 days: the contract's
    assert "one-step naive" not in result.output


def test_a_gap_over_an_origins_history_names_the_origin_and_the_window(app, tmp_path):
    """It failed with "history has no finite values" and nothing else."""
    source = pd.read_csv(ELB).iloc[:1500].drop(index=range(1300, 1490))
    csv = tmp_path / "gap.csv"
    source.to_csv(csv, index=False)
    args = ("--model", "seasonal_naive", "--horizon", "12", "--origins", "2", "--history", "6h")
    result = _run(app, csv, *args, "--output", tmp_path / "out.csv")
    assert result.exit_code == 1
    assert "error: origin 2014-04-15T03:19:00+00:00: history has no finite values" in (
        result.output
    )
    assert "the 6h history window before it has 0 observed point(s) of 72" in result.output
    assert "Traceback" not in result.output


def test_origins_in_an_empty_tail_say_there_is_nothing_to_score(app, tmp_path):
    """Every origin in the empty rows at the end: the scores are n/a, and the note said
    the series "did not vary"."""
    source = pd.read_csv(ELB).iloc[:2000]
    source.loc[1700:, "value"] = None
    csv = tmp_path / "tail.csv"
    source.to_csv(csv, index=False)
    args = ("--model", "seasonal_naive", "--horizon", "12", "--origins", "3", "--history", "2d")
    result = _run(app, csv, *args, "--output", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    assert "no scores: no forecast step has an observed value" in result.output
    assert "did not vary" not in result.output
