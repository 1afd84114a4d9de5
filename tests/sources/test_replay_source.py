"""CSV replay: a real trace shifted by whole weeks to end now, looped, never beyond now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecaster.errors import InputDataError
from forecaster.sources.replay import FileSource, ReplayTrace
from forecaster.specs import parse_spec
from forecaster.timeseries import read_series_csv, to_grid

STEP = timedelta(minutes=5)


def _clock(when: datetime) -> Any:
    return lambda: when


def test_trace_ends_within_a_week_before_now_on_the_same_weekday(nab: Path) -> None:
    path = nab / "realTweets" / "Twitter_volume_AAPL.csv"
    now = datetime(2026, 11, 27, 12, 3, tzinfo=UTC)
    trace = ReplayTrace(path, STEP, _clock(now))
    shift = trace.shift()
    assert shift % timedelta(days=7) == timedelta(0)
    end = trace.values.index[-1].to_pydatetime() + shift
    assert now - timedelta(days=7) < end <= now
    window = trace.window(now - timedelta(days=28), now)
    original = to_grid(read_series_csv(path), STEP)
    # Every replayed value is a real value of the trace at the same weekday and time of day.
    sample = window.iloc[:: len(window) // 50]
    for ts, value in sample.items():
        source_ts = ts - shift
        if source_ts > original.index[-1]:
            source_ts -= trace.period
        assert original[source_ts] == value
        assert source_ts.weekday() == ts.weekday()
    assert window.index[-1] <= now
    assert window.index[-1] > now - 2 * STEP


def test_replay_grows_as_time_passes(nab: Path) -> None:
    path = nab / "realAWSCloudwatch" / "elb_request_count_8c0756.csv"
    t1 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    first = ReplayTrace(path, STEP, _clock(t1)).window(t1 - timedelta(hours=1), t1)
    t2 = t1 + timedelta(minutes=30)
    later = ReplayTrace(path, STEP, _clock(t2)).window(t1 - timedelta(hours=1), t2)
    assert len(later) == len(first) + 6
    assert (later.loc[first.index] == first).all()


def test_file_source_fetch_returns_one_named_series(nab: Path, tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "series": [
                {
                    "name": "elb",
                    "file": str(nab / "realAWSCloudwatch" / "elb_request_count_8c0756.csv"),
                }
            ]
        }
    ).series[0]
    now = datetime.now(UTC)
    fetched = FileSource().fetch(spec, now - timedelta(days=2), now)
    assert len(fetched) == 1 and fetched[0].name == "elb" and fetched[0].labels == {}
    values = fetched[0].values
    assert values is not None and len(values) > 500
    assert str(values.index.tz) == "UTC"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("timestamp,value\n", "no rows"),
        ("2024-01-01,1\n2024-01-02,2\n", "header row"),
        ("timestamp\n2024-01-01\n", "two columns"),
        ("timestamp,value\n2024-01-01,abc\n", "row 2: value 'abc' is not a number"),
        ("timestamp,value\nyesterday-ish,1\n", "cannot parse timestamp"),
        ("timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01 00:05,2\n", "mix time zones"),
        # an offset of whole hours (+05) among naive rows: a mix too (it was read as naive)
        ("timestamp,value\n2024-01-01 00:00,1\n2024-01-01 00:05:00+05,2\n", "mix time zones"),
        # zone names are ambiguous (pandas dropped them, reading the time as UTC)
        ("timestamp,value\n2024-01-01 00:00:00 EST,1\n", r"row 2: .*names its time zone \(EST\)"),
        ("timestamp,value\n2024-01-01,1\n2024-01-01 01:00 cest,2\n", r"row 3: .*\(CEST\)"),
        ("timestamp,value\n2024-01-01,1\n2024-01-02,inf\n", "row 3: value 'inf' is infinite"),
        ("timestamp,value\n2024-01-01,-Infinity\n", "row 2: value '-Infinity' is infinite"),
        ("1704067200,1\n1704067500,2\n", "first row looks like data"),
        # mostly Unix time: the ISO row is the one named (it was the Unix time, as a year)
        (
            "timestamp,value\n1704067200,1\n2024-01-01 00:05,2\n1704067800,3\n",
            "row 3: timestamp '2024-01-01 00:05' is not Unix time like the other rows",
        ),
        # pandas' own "at position N" (from 0, without the header) is not repeated
        ("timestamp,value\n2024-01-01,1\n2024-01-02,2\nsoon,3\n", r"row 4: .*parse: soon$"),
        ("timestamp,value\n2024-01-01,1\n,2\n", r"row 3: no timestamp \(''\)"),
        ("timestamp,value\n2024-01-01,1\nNaN,2\n", r"row 3: no timestamp \('NaN'\)"),
        ("timestamp,value\n2024-01-01T00:00Z,1\n,2\n", r"row 3: no timestamp"),
        ("timestamp,value\n2024-01-01,1\nsoon,2\n", "row 3: cannot parse timestamp 'soon'"),
        ("timestamp,value\n2024-01-01,1\n2400-01-01,2\n", "row 3: cannot parse timestamp '2400"),
        ("timestamp,value\n1704067200,1\n99999999999999999,2\n", "row 3: .* outside the supp"),
        (
            "timestamp,value\n2024-01-01,1\n2024-01-02,1e400\n",
            r"row 3: value '1e400' is beyond the largest 64-bit float \(about 1.8e308\)",
        ),
        ("timestamp,value\n2024-01-01,-2e101\n", "row 2: value '-2e101' is larger than 1e\\+100"),
        ('{"timestamp": ["2024-01-01"], "value": [1]}', "looks like JSON, not CSV"),
        # a third field on every row: its values were dropped without a word
        ("timestamp,value\n2024-01-01,1,7\n2024-01-02,2,8\n", "more fields than the header"),
        # a European export: semicolons between the columns, decimal commas in the values
        # ("more fields than the header": the header is one field, each row two)
        (
            "timestamp;value\n2024-01-01 00:00;50,12\n2024-01-01 00:05;49,5\n",
            "one column 'timestamp;value': separate the columns with commas, not semicolons",
        ),
        # pandas' to_csv writes its row numbers as an unnamed first column
        (",timestamp,value\n0,2024-01-01,1\n", "the first column has no name"),
        # relative seconds: pandas said "day is out of range for month: 0"
        ("t,value\n0,1\n300,2\n", "row 2: cannot parse timestamp '0': a small number"),
        # a day-first and a month-first date in one file cannot both be right
        ("timestamp,value\n13/03/2024,1\n03/14/2024,2\n", "mix day-first .* month-first"),
        # pandas counted the unclosed quote's row from 0 with the header
        (
            'timestamp,value\n2024-01-01,1\n"2024-01-02,2\n2024-01-03,3\n',
            "row 3: a quote opened there is never closed",
        ),
    ],
)
def test_bad_csv_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputDataError, match=message):
        read_series_csv(path)


def test_zone_abbreviations_that_are_unambiguous_are_read(tmp_path: Path) -> None:
    path = tmp_path / "zones.csv"
    path.write_text(
        "timestamp,value\n2024-01-01 00:00 UTC,1\n2024-01-01 00:05 GMT,2\n"
        "2024-01-01 00:10:00+00,3\n"
    )
    series = read_series_csv(path)
    assert list(series.index.minute) == [0, 5, 10] and list(series) == [1.0, 2.0, 3.0]
    path.write_text("timestamp,value\n2024-01-01 10:00 AM,1\n2024-01-01 01:00 PM,2\n")
    assert list(read_series_csv(path).index.hour) == [10, 13]


def test_rows_without_values_at_either_end_are_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An export that runs on past the data: the series ends at its last value (the
    empty tail had put a backtest's origins and a replay's days where nothing was)."""
    path = tmp_path / "tail.csv"
    rows = ["2024-01-01 00:00,", "2024-01-01 00:05,1", "2024-01-01 00:10,", "2024-01-01 00:15,2"]
    rows += [f"2024-01-01 {h:02d}:00," for h in range(1, 5)]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    series = read_series_csv(path)
    assert list(series.index.minute) == [5, 10, 15]  # the gap inside stays
    assert series.isna().tolist() == [False, True, False]
    assert "the first 1 row(s) have no value; the series starts at" in caplog.text
    assert "the last 4 row(s) have no value; the series ends at 2024-01-01T00:15" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"timestamp;value\n2024-01-01;1\n", "with commas, not semicolons"),
        (b"timestamp\tvalue\n2024-01-01\t1\n", "with commas, not tabs"),
        (
            "timestamp,value\n2024-01-01,1\n2024-01-02,2 \u00b0C\n".encode("latin-1"),
            r"line 3: not UTF-8 text \(byte 0xb0\)",
        ),
        ("timestamp,value\n2024-01-01,1\n".encode("utf-16"), "line 1: not UTF-8 text"),
        # pandas skips blank lines: the row named is still the file's line
        (b"timestamp,value\n\n\n2024-01-01,1\n\n2024-01-02,abc\n", "row 6: value 'abc'"),
        (b"\ntimestamp,value\n2024-01-01,1\n\n,2\n", "row 5: no timestamp"),
    ],
)
def test_csv_messages_name_the_line_and_the_dialect(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputDataError, match=message):
        read_series_csv(path)


def test_bom_crlf_and_blank_lines_are_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbftimestamp,value\r\n2024-01-01 00:05,2\r\n\r\n2024-01-01,1\r\n")
    with caplog.at_level("WARNING"):
        series = read_series_csv(path)
    assert series.name == "value" and list(series.to_numpy()) == [1.0, 2.0]
    assert "row 4: timestamp 2024-01-01T00:00:00+00:00 is earlier" in caplog.text


def test_large_values_below_the_bound_are_read(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("timestamp,value\n2024-01-01,1e99\n2024-01-01 00:05,-3e99\n")
    assert list(read_series_csv(path).to_numpy()) == pytest.approx([1e99, -3e99], rel=1e-15)


def test_extra_columns_are_named_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "labelled.csv"
    path.write_text("ds,y,label,note\n2024-01-01,1,a,x\n2024-01-01 00:05,2,b,y\n")
    with caplog.at_level("WARNING"):
        series = read_series_csv(path)
    assert list(series.to_numpy()) == [1.0, 2.0]
    assert "using the first two columns (ds, y); ignoring 'label', 'note'" in caplog.text


def test_a_grid_too_large_for_memory_is_refused_before_it_is_built(tmp_path: Path) -> None:
    path = tmp_path / "stray.csv"
    path.write_text("timestamp,value\n1970-01-02,1\n2024-01-01,2\n")
    series = read_series_csv(path)
    with pytest.raises(
        InputDataError,
        match=r"spans 19722d \(1970-01-02T00:00:00\+00:00 to 2024-01-01.*grid of 1s .* more than",
    ):
        to_grid(series, timedelta(seconds=1))
    assert len(to_grid(series, timedelta(days=1))) == 19723


def test_unix_timestamps_in_seconds_or_milliseconds(tmp_path: Path) -> None:
    """Prometheus and many exporters write Unix time; 9+ digits are read as such."""
    seconds = tmp_path / "s.csv"
    seconds.write_text("ts,v\n1704067200,1\n1704067500.5,2\n")
    millis = tmp_path / "ms.csv"
    millis.write_text("ts,v\n1704067200000,1\n1704067500000,2\n")
    start = pd.Timestamp("2024-01-01T00:00:00Z")
    got = read_series_csv(seconds)
    assert list(got.index) == [start, start + pd.Timedelta(seconds=300.5)]
    assert list(read_series_csv(millis).index) == [start, start + pd.Timedelta(minutes=5)]
    assert list(got.to_numpy()) == [1.0, 2.0]


def test_a_directory_or_a_missing_path_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="is a directory, not a CSV file"):
        read_series_csv(tmp_path)
    with pytest.raises(InputDataError, match="no such file"):
        read_series_csv(tmp_path / "missing.csv")


def test_duplicate_timestamps_are_averaged_or_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("timestamp,value\n2024-01-01,1\n2024-01-01,3\n2024-01-01 00:05,5\n")
    with caplog.at_level("WARNING"):
        series = read_series_csv(path)
    assert list(series.to_numpy()) == [2.0, 5.0]
    assert "rows 2 and 3 share the timestamp 2024-01-01T00:00:00+00:00" in caplog.text
    with pytest.raises(InputDataError, match=r"rows 2 and 3 share .*without --strict"):
        read_series_csv(path, strict=True)


def test_a_file_read_again_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A replayed file is read at every ingest: the same repeated stamps logged the
    same warning every step; the second read says it at debug level only."""
    path = tmp_path / "dup-again.csv"
    path.write_text("timestamp,value\n2024-01-01,1\n2024-01-01,3\n2024-01-01 00:05,5\n")
    with caplog.at_level("DEBUG", logger="forecaster.timeseries"):
        read_series_csv(path)
        read_series_csv(path)
    said = [r for r in caplog.records if "share the timestamp" in r.getMessage()]
    assert [r.levelname for r in said] == ["WARNING", "DEBUG"]


def test_unsorted_rows_are_sorted_or_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "unsorted.csv"
    path.write_text("timestamp,value\n2024-01-01 00:05,2\n2024-01-01 00:00,1\n2024-01-01 00:10,3\n")
    with caplog.at_level("WARNING"):
        series = read_series_csv(path)
    assert list(series.to_numpy()) == [1.0, 2.0, 3.0]
    assert "row 3: timestamp 2024-01-01T00:00:00+00:00 is earlier" in caplog.text
    with pytest.raises(InputDataError, match=r"unsorted.csv: row 3: .* out of time order"):
        read_series_csv(path, strict=True)


def test_csv_variants_parse(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("ds,y\n2024-01-01T00:10:00+01:00,3\n2024-01-01T00:00:00+01:00,1\n")
    series = read_series_csv(path)
    assert list(series.to_numpy()) == [1.0, 3.0]
    assert series.index[0] == datetime(2023, 12, 31, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize("start", ["2024-03-01", "2024-03-12 20:00"])
def test_day_first_dates_are_read_day_first_throughout(
    tmp_path: Path, start: str, caplog: pytest.LogCaptureFixture
) -> None:
    """pandas guessed per row, month first where it could: 1-2 March written day first
    became 3 January to 3 February (96% of the grid empty, exit 0), and across the 12th
    half the rows were months away."""
    stamps = pd.date_range(start, periods=400, freq="5min")
    path = tmp_path / "dayfirst.csv"
    pd.DataFrame({"timestamp": stamps.strftime("%d/%m/%Y %H:%M"), "value": 1.0}).to_csv(
        path, index=False
    )
    series = read_series_csv(path)
    assert (series.index == stamps.tz_localize("UTC")).all()
    if start == "2024-03-01":  # every day and month <= 12: the order of the rows decided
        assert "read day first (DD/MM)" in caplog.text
    month_first = tmp_path / "monthfirst.csv"
    pd.DataFrame({"timestamp": stamps.strftime("%m/%d/%Y %H:%M"), "value": 1.0}).to_csv(
        month_first, index=False
    )
    assert (read_series_csv(month_first).index == stamps.tz_localize("UTC")).all()


def test_a_trailing_comma_and_comments_before_the_header_are_read(tmp_path: Path) -> None:
    """A trailing comma on every row made pandas index by the timestamps and read the
    values as timestamps ("cannot parse timestamp '100.251'"); an exporter's comment
    line was taken for the header ("found 1 column(s)")."""
    path = tmp_path / "export.csv"
    path.write_text(
        "# exported by foo\n#\ntimestamp,value\n2024-03-01 00:00,1.5,\n2024-03-01 00:05,2.5,\n"
    )
    series = read_series_csv(path)
    assert series.tolist() == [1.5, 2.5]
    path.write_text("# exported by foo\ntimestamp,value\n2024-03-01 00:00,1\nyesterday,2\n")
    with pytest.raises(InputDataError, match="row 4: cannot parse timestamp 'yesterday'"):
        read_series_csv(path)


def test_monthly_dates_in_us_order_stay_month_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """01/01/2024 .. 12/01/2024 are in order either way; the shorter span made them
    twelve days of January."""
    path = tmp_path / "monthly.csv"
    rows = "".join(f"{m:02d}/01/2024,{m}\n" for m in range(1, 13))
    path.write_text("timestamp,value\n" + rows)
    series = read_series_csv(path)
    assert series.index[-1] == pd.Timestamp("2024-12-01", tz="UTC")
    assert "read month first (day and month both at most 12)" in caplog.text


@pytest.mark.parametrize("header", ["#timestamp,value", "[time],value"])
def test_headers_starting_with_a_hash_or_a_bracket_are_headers(tmp_path: Path, header: str) -> None:
    """'#timestamp' was blanked as a comment and '[time]' refused as JSON."""
    path = tmp_path / "h.csv"
    path.write_text(f"{header}\n2024-01-01 00:00,1\n2024-01-01 00:05,2\n")
    assert read_series_csv(path).tolist() == [1.0, 2.0]
