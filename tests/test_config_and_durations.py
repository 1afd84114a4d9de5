"""Settings fail fast; durations parse strictly."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecaster.config import load_settings, warn_unknown_variables
from forecaster.durations import format_duration, parse_duration
from forecaster.errors import ConfigError


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings()
    assert settings.database.url.startswith("sqlite:///")
    assert settings.mlflow.tracking_uri == "sqlite:///models/mlflow.db"
    assert settings.prometheus.timeout_seconds > 0
    assert settings.api.port == 8000


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECASTER_PROMETHEUS__URL", "https://prom.example:9090/")
    monkeypatch.setenv("FORECASTER_DATABASE__URL", "postgresql://u@db/forecaster")
    monkeypatch.setenv("FORECASTER_API__TOKEN", "s3cr3t-value")
    settings = load_settings()
    assert settings.prometheus.url == "https://prom.example:9090"
    assert settings.database.url == "postgresql+psycopg://u@db/forecaster"
    assert settings.api.token is not None
    assert "s3cr3t" not in repr(settings)


def test_invalid_settings_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECASTER_PROMETHEUS__TIMEOUT_SECONDS", "-1")
    with pytest.raises(ConfigError, match="prometheus.timeout_seconds"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # other drivers passed the check and failed later with a traceback
        (
            "FORECASTER_DATABASE__URL",
            "postgresql+psycopg2://u:pw@h/db",
            "got 'postgresql+psycopg2://u:***@h/db' (this release talks to PostgreSQL",
        ),
        ("FORECASTER_DATABASE__URL", "sqlitex:///foo.db", "only sqlite:/// and postgresql"),
        # beyond what a date can hold: every housekeeping run crashed
        (
            "FORECASTER_SCHEDULE__JOB_RUNS_RETENTION_HOURS",
            "1000000000",
            "schedule.job_runs_retention_hours: Input should be less than or equal to 87600",
        ),
        (
            "FORECASTER_SCHEDULE__HISTORY_RETENTION_DAYS",
            "1000000",
            "schedule.history_retention_days: Input should be less than or equal to 3660",
        ),
        (
            "FORECASTER_DATABASE__SQLITE_BUSY_TIMEOUT_SECONDS",
            "inf",
            "database.sqlite_busy_timeout_seconds: Input should be a finite number",
        ),
        (
            "FORECASTER_MLFLOW__REQUEST_TIMEOUT_SECONDS",
            "inf",
            "mlflow.request_timeout_seconds: Input should be a finite number",
        ),
        (
            "FORECASTER_PROMETHEUS__TIMEOUT_SECONDS",
            "nan",
            "prometheus.timeout_seconds: Input should be a finite number",
        ),
        ("FORECASTER_LOG_LEVEL", "LOUD", "log_level: must be one of DEBUG, INFO"),
        # a missing TLS file crashed every ingest with a traceback instead
        (
            "FORECASTER_PROMETHEUS__CLIENT_CERT",
            "/nonexistent.pem",
            "client_cert: file '/nonexistent.pem' does not exist",
        ),
        ("FORECASTER_PROMETHEUS__CA_FILE", "/nope/ca.pem", "ca_file: file '/nope/ca.pem'"),
        # URLs that validated, then failed every ingest ("Invalid URL", or a 404)
        ("FORECASTER_PROMETHEUS__URL", "http://:9090", "prometheus.url: 'http://:9090' names no"),
        (
            "FORECASTER_PROMETHEUS__URL",
            "http://prom:99999",
            "prometheus.url: 'http://prom:99999' is not a usable URL: Port out of range",
        ),
        ("FORECASTER_PROMETHEUS__URL", "http://prom :9090", "contains white space"),
        ("FORECASTER_PROMETHEUS__URL", "http://prom:9090/?x=1", "has a query string or fragment"),
        # a password in it is not printed
        ("FORECASTER_PROMETHEUS__URL", "ftp://ops:pw@prom", "got 'ftp://ops:***@prom'"),
        ("FORECASTER_PROMETHEUS__URL", "http://ops:pw@prom:x", "'http://ops:***@prom:x' is not"),
        # a token the Authorization header cannot carry failed every ingest, naming it
        (
            "FORECASTER_PROMETHEUS__BEARER_TOKEN",
            "tok:pw@en\twith a tab",
            "prometheus.bearer_token: contains white space or control characters",
        ),
        ("FORECASTER_PROMETHEUS__BEARER_TOKEN", "  \n", "prometheus.bearer_token: is empty"),
        # "notaurl" failed inside distributed with a 27-frame traceback at the first training
        (
            "FORECASTER_TRAINING__DASK_ADDRESS",
            "notaurl",
            "expected a Dask scheduler address such as tcp://scheduler:8786, got 'notaurl'",
        ),
        ("FORECASTER_DASK_ADDRESS", "tcp://scheduler", "got 'tcp://scheduler'"),
        ("FORECASTER_SCHEDULE__TIMEZONE", "Mars/Phobos", "unknown time zone 'Mars/Phobos'"),
        (
            "FORECASTER_API__CORS_ORIGINS",
            "https://a.example",
            "a FORECASTER_API* variable is not valid JSON",
        ),
    ],
)
def test_nonsense_settings_are_a_config_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)
    assert ":pw@" not in str(info.value)


def test_white_space_around_the_prometheus_bearer_token_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FORECASTER_PROMETHEUS__BEARER_TOKEN", "tok-123\n")
    token = load_settings().prometheus.bearer_token
    assert token is not None and token.get_secret_value() == "tok-123"


def test_white_space_around_the_prometheus_url_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a Kubernetes secret made from a file keeps its final newline
    monkeypatch.setenv("FORECASTER_PROMETHEUS__URL", " https://prom.example:9090/prom/\n")
    assert load_settings().prometheus.url == "https://prom.example:9090/prom"


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "FORECASTER_SCHEDULE__STALE_AFTER_SECOND",
            "FORECASTER_SCHEDULE__STALE_AFTER_SECOND is not a setting "
            "(did you mean FORECASTER_SCHEDULE__STALE_AFTER_SECONDS?)",
        ),
        ("FORECASTER_API__TOKN", "(did you mean FORECASTER_API__TOKEN?)"),
        (
            "FORECASTER_SCHEDULE__TRAIN_CRON",
            "FORECASTER_SCHEDULE__TRAIN_CRON is not a setting; set 'schedule: {train:",
        ),
        ("FORECASTER_SCHEDULE__PUBLISH_EVERY_SECONDS", "per series in the pipeline spec"),
        ("FORECASTER_SCALER__ZZZ", "FORECASTER_SCALER__ZZZ is not a setting"),
    ],
)
def test_a_misspelt_section_setting_is_refused_not_ignored(
    monkeypatch: pytest.MonkeyPatch, variable: str, message: str
) -> None:
    monkeypatch.setenv(variable, "5")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)


def test_stray_top_level_variables_are_named_with_the_closest_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {
        "FORECASTER_PIPELINE": "x.yaml",
        "FORECASTER_API_TOKEN": "t",
        "FORECASTER_TEST_PG": "postgresql://...",
        "FORECASTER_PIPELINES": "pipelines/demo.yaml",
        "FORECASTER_API__TOKEN": "t",
        "forecaster_log_level": "INFO",
        "PATH": "/bin",
    }
    with caplog.at_level("WARNING", logger="forecaster.config"):
        unknown = warn_unknown_variables(environ)
    assert unknown == ["FORECASTER_API_TOKEN", "FORECASTER_PIPELINE"]
    assert (
        "ignoring FORECASTER_PIPELINE: it is not a forecaster setting (did you mean "
        "FORECASTER_PIPELINES?)" in caplog.text
    )
    assert "did you mean FORECASTER_API__TOKEN?" in caplog.text


def test_cli_warns_about_a_stray_variable_and_goes_on(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    env["FORECASTER_PIPELINEZ"] = "x"
    done = subprocess.run(
        [sys.executable, "-m", "forecaster", "db", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ignoring FORECASTER_PIPELINEZ" in done.stderr
    assert "did you mean FORECASTER_PIPELINES?" in done.stderr


def test_log_level_and_time_zone_that_exist_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECASTER_LOG_LEVEL", "debug")
    monkeypatch.setenv("FORECASTER_SCHEDULE__TIMEZONE", "Europe/Berlin")
    settings = load_settings()
    assert settings.log_level == "DEBUG" and settings.schedule.timezone == "Europe/Berlin"


def test_prophet_fit_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().training.prophet_fit_timeout_seconds == 60.0
    monkeypatch.setenv("FORECASTER_TRAINING__PROPHET_FIT_TIMEOUT_SECONDS", "12.5")
    assert load_settings().training.prophet_fit_timeout_seconds == 12.5
    monkeypatch.setenv("FORECASTER_TRAINING__PROPHET_FIT_TIMEOUT_SECONDS", "0")
    with pytest.raises(ConfigError, match="training.prophet_fit_timeout_seconds"):
        load_settings()


def test_production_rejects_placeholder_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECASTER_ENVIRONMENT", "production")
    monkeypatch.setenv("FORECASTER_API__TOKEN", "changeme")
    with pytest.raises(ConfigError, match="api.token") as info:
        load_settings()
    # a model-wide check has no field of its own: no empty "': '" before its message
    assert str(info.value).startswith("invalid settings: api.token (FORECASTER_API__TOKEN)")


def test_unsupported_database_url() -> None:
    with pytest.raises(ConfigError, match="database.url"):
        load_settings(database={"url": "mysql://x"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("28d", 28 * 86400), ("2w", 14 * 86400), (60, 60)],
)
def test_parse_duration(text: str | int, expected: int) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "5", "5 parsecs", "m5", "-5m", "0s", "99999d", "1h-"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="horizon"):
        parse_duration(text, what="horizon")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5M", "units are lower-case"),  # a month? Prometheus has no such unit: refused
        ("1H", "units are lower-case"),
        ("1h1h", "each unit once, largest first"),
        ("30m1h", "each unit once, largest first"),
        ("1s500ms1s", "each unit once"),
        ("300", "a number needs a unit"),
        ("-15m", "must be positive"),  # not "cannot parse"
    ],
)
def test_durations_are_read_as_prometheus_reads_them(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text, what="horizon")
    assert parse_duration("1h 30m") == parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1s500ms") == timedelta(seconds=1.5)


@pytest.mark.parametrize("text", ["-1m", "-0.5s", -60, -0.5])
def test_a_negative_duration_where_zero_is_off_says_zero_is_allowed(text: str | float) -> None:
    with pytest.raises(ValueError, match=r"^window: must be 0 \(off\) or positive, got "):
        parse_duration(text, what="window", allow_zero=True)
    with pytest.raises(ValueError, match=r"^window: must be positive, got "):
        parse_duration(text, what="window")


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999999w", "9" * 400 + "s", 10**400, -(10**400), math.inf, math.nan],
    ids=["huge-weeks", "huge-seconds", "huge-int", "huge-negative-int", "inf", "nan"],
)
def test_parse_duration_refuses_what_timedelta_cannot_hold(text: str | float) -> None:
    """Too large for a timedelta (OverflowError from it), or NaN: the same ValueError."""
    with pytest.raises(ValueError, match="horizon"):
        parse_duration(text, what="horizon")


@pytest.mark.parametrize("text", ["1" * 20_000, "1" * 20_000 + "x", "1h" + "5" * 20_000])
def test_parse_duration_refuses_a_long_value_in_linear_time(text: str) -> None:
    """A long run of digits without a unit was searched for a part at every position:
    4,000 digits (an API query parameter) took half a second, 20,000 twelve seconds."""
    started = time.perf_counter()
    with pytest.raises(ValueError, match="cannot parse"):
        parse_duration(text, what="latency")
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("text", ["0", "0s", "0m", "0h", 0, timedelta(0)])
def test_parse_duration_allows_zero_only_when_asked(text: str | int | timedelta) -> None:
    assert parse_duration(text, allow_zero=True) == timedelta(0)
    with pytest.raises(ValueError, match="horizon"):
        parse_duration(text, what="horizon")
    with pytest.raises(ValueError, match="horizon"):
        parse_duration("-5m", what="horizon", allow_zero=True)


@given(st.integers(min_value=1, max_value=10 * 365 * 86400 * 1000))
def test_format_then_parse_roundtrips_to_the_millisecond(millis: int) -> None:
    value = timedelta(milliseconds=millis)
    assert parse_duration(format_duration(value)) == value


@given(st.integers(min_value=1, max_value=10 * 365 * 86400))
def test_format_then_parse_roundtrips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    "address", ["scheduler:8786", "tcp://scheduler:8786", "tls://10.0.0.1:8786"]
)
def test_the_dask_address_forms_dask_reads_are_accepted(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setenv("FORECASTER_TRAINING__DASK_ADDRESS", address)
    assert load_settings().training.dask_address == address
