"""Pipeline spec validation: good specs load, bad specs name the problem."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from forecaster.errors import SpecError
from forecaster.specs import load_spec, parse_spec

ELB = (
    Path(__file__).resolve().parents[1] / "data/nab/realAWSCloudwatch/elb_request_count_8c0756.csv"
)


def test_demo_spec_in_repo_loads() -> None:
    spec = load_spec(Path(__file__).resolve().parents[1] / "pipelines" / "demo.yaml")
    names = [s.name for s in spec.series]
    assert names == ["elb_requests", "tweets_aapl", "ec2_latency"]
    assert all(s.file is not None and s.file.is_file() for s in spec.series)
    assert spec.series[2].kind == "latency"
    watch = spec.series[2].watch  # the demo shows regression detection on latency
    assert watch is not None and watch.direction == "up"
    assert [s.watch for s in spec.series[:2]] == [None, None]


def test_example_prometheus_spec_loads() -> None:
    path = Path(__file__).resolve().parents[1] / "pipelines" / "prometheus.example.yaml"
    spec = load_spec(path)
    by_route = spec.get("checkout_rps_by_route")
    assert by_route.split_by == ("route",)
    assert by_route.source == "prometheus"


def test_defaults_are_inherited_and_overridable(tmp_path: Path, write_spec: Any) -> None:
    path = write_spec(
        tmp_path / "s.yaml",
        [
            {"name": "a", "query": "up"},
            {
                "name": "b",
                "query": "up",
                "step": "1m",
                "horizon": "2h",
                "schedule": {"publish": "30s"},
            },
        ],
        step="5m",
        horizon="1h",
    )
    spec = load_spec(path)
    a, b = spec.series
    assert a.step == timedelta(minutes=5) and a.horizon_steps == 12
    assert b.step == timedelta(minutes=1) and b.horizon_steps == 120
    assert b.schedule.publish == timedelta(seconds=30)
    assert a.schedule.train == "0 3 * * *"
    assert a.ingest_every == timedelta(minutes=5)


def test_relative_file_resolved_against_spec_folder(tmp_path: Path, write_spec: Any) -> None:
    (tmp_path / "t.csv").write_text("timestamp,value\n2024-01-01,1\n2024-01-01 00:05,2\n")
    spec = load_spec(write_spec(tmp_path / "s.yaml", [{"name": "f", "file": "t.csv"}]))
    assert spec.series[0].file == (tmp_path / "t.csv").resolve()
    assert spec.series[0].source == "file"


@pytest.mark.parametrize(
    ("series", "defaults", "message"),
    [
        ([{"name": "a", "query": "up", "colour": "red"}], {}, "colour: unknown key"),
        ([{"name": "a", "query": "up", "step": "5 parsecs"}], {}, "cannot parse '5 parsecs'"),
        ([{"name": "a"}], {}, "exactly one source"),
        ([{"name": "a", "query": "up"}, {"name": "a", "query": "up"}], {}, "duplicate series name"),
        ([{"name": "a", "query": "up", "horizon": "3650d"}], {}, "horizon longer than"),
        (
            [{"name": "a", "query": "up", "estimators": ["oracle"]}],
            {},
            "unknown estimator 'oracle'",
        ),
        ([{"name": "bad name!", "query": "up"}], {}, "series name 'bad name!'"),
        ([{"name": "a", "query": "  "}], {}, "query is empty"),
        ([{"name": "a", "query": "up", "split_by": ["9x"]}], {}, "not a valid Prometheus label"),
        ([{"name": "a", "file": "missing.csv"}], {}, "does not exist"),
        ([{"name": "a", "query": "up", "step": "-5m"}], {}, "step: must be positive, got '-5m'"),
        ([{"name": "a", "file": "."}], {}, "is a directory"),
        ([{"name": "a", "query": "up", "schedule": {"train": "daily"}}], {}, "5-field cron"),
        ([{"name": "a", "query": "up"}], {"stepp": "5m"}, "stepp: unknown key"),
        # both loaded, then every training (history) or every ingest (step) failed
        (
            [{"name": "a", "query": "up", "step": "15s", "history": "2m"}],
            {},
            "history 2m covers fewer than the 12 steps of 15s a training needs; use at least 3m",
        ),
        (
            [{"name": "a", "query": "up", "step": "1500ms", "horizon": "15s"}],
            {},
            "step 1s500ms is not a whole number of seconds",
        ),
        (
            [{"name": "a", "query": "up", "watch": {"learning": "20d"}}],
            {},
            "longer than watch.baseline_window",
        ),
        (
            [{"name": "a", "query": "up", "watch": {"baseline_quantile": 1.5}}],
            {},
            "less than or equal to 0.99999",
        ),
        ([{"name": "a", "query": "up", "watch": {"instant_factor": 0.5}}], {}, "instant_factor"),
        (
            [{"name": "a", "query": "up", "watch": {"min_score": float("inf")}}],
            {},
            "watch.min_score: Input should be a finite number",
        ),
        (
            [{"name": "a", "query": "up", "cache_warming": {"min_increase": float("inf")}}],
            {},
            "cache_warming.min_increase: Input should be a finite number",
        ),
        (  # the lead was not honoured: windows starting past within waited for it
            [{"name": "a", "query": "up", "cache_warming": {"lead": "30m", "within": "10m"}}],
            {},
            "cache_warming.within (10m) is shorter than cache_warming.lead (30m)",
        ),
        (
            [{"name": "a", "query": "up", "schedule": {"train": "0 99 * * *"}}],
            {},
            "schedule.train: '0 99 * * *' is not a valid cron expression",
        ),
        (
            [{"name": "a", "query": "up", "estimators": ["prophet", "prophet"]}],
            {},
            "estimators: an estimator is listed twice",
        ),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(
    tmp_path: Path,
    series: list[dict[str, object]],
    defaults: dict[str, object],
    message: str,
    write_spec: Any,
) -> None:
    path = write_spec(tmp_path / "bad.yaml", series, **defaults)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert message in str(info.value)
    assert "bad.yaml" in str(info.value)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("series: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="is a directory, not a YAML file"):
        load_spec(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "series:\n  - name: a\n    query: up\n    step: 5m\n    step: 1h\n",
            "found key 'step' twice (first on line 4)",
        ),
        (
            "series:\n  - {name: a, query: up}\nseries:\n  - {name: b, query: up}\n",
            "found key 'series' twice (first on line 1)",
        ),
    ],
)
def test_a_key_given_twice_is_refused_naming_its_lines(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert message in str(info.value)
    assert f'in "{path}", line' in str(info.value)


def test_a_merged_key_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "series:\n  - name: a\n    query: up\n    schedule:\n"
        "      <<: {publish: 1m}\n      publish: 2m\n"
    )
    assert load_spec(path).series[0].schedule.publish == timedelta(minutes=2)


def test_a_spec_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("series:\n  - name: a\n    query: up\n    unit: \u00b0C\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin1.yaml: line 4: not UTF-8 text \(byte 0xb0\)"):
        load_spec(path)


def test_a_field_is_named_once_in_the_message() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({"series": [{"name": "a", "query": "up", "step": "-5m"}]})
    assert "step: must be positive, got '-5m'" in str(info.value)
    assert "step: step:" not in str(info.value)
    with pytest.raises(SpecError, match="non-empty list"):
        parse_spec({"series": []})
    with pytest.raises(SpecError, match="unknown top-level"):
        parse_spec({"series": [{"name": "a", "query": "up"}], "sereis": []})
    # YAML allows keys that are not strings ("1: x"): named, not a TypeError in sorted()
    with pytest.raises(SpecError, match=r"unknown top-level key\(s\) \[1, 'bar'\]"):
        parse_spec({"series": [{"name": "a", "query": "up"}], 1: "x", "bar": "y"})
    with pytest.raises(SpecError, match="file is empty"):
        parse_spec({"series": [{"name": "a", "file": " "}]})


def test_an_error_from_a_value_of_the_defaults_block_says_so() -> None:
    """The series takes step from ``defaults:``: the message names the series (where it
    failed) and that the value came from the defaults (where to fix it)."""
    spec = {"defaults": {"step": "7m"}, "series": [{"name": "a", "query": "up"}]}
    with pytest.raises(
        SpecError, match=r"series\[0\] \('a'\): horizon 1d .* \(step from defaults\)"
    ):
        parse_spec(spec)
    # given in the series itself: nothing to say about the defaults
    spec = {"series": [{"name": "a", "query": "up", "step": "7m"}]}
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    assert "from defaults" not in str(info.value)
    with pytest.raises(SpecError, match="unsupported spec version"):
        parse_spec({"version": 2, "series": [{"name": "a", "query": "up"}]})


def test_version_is_checked_first_and_a_quoted_one_is_explained() -> None:
    broken = {"series": [{"name": "a"}]}  # no source: the version must be reported first
    with pytest.raises(SpecError, match="the number 1, not the string '1'; drop the quotes"):
        parse_spec({"version": "1", **broken})
    for version in (2, True, "v1"):
        with pytest.raises(SpecError, match="this release reads version 1"):
            parse_spec({"version": version, **broken})
    assert parse_spec({"version": 1, "series": [{"name": "a", "query": "up"}]}).version == 1


def test_a_horizon_that_is_not_whole_steps_is_refused_with_the_nearest_ones() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({"series": [{"name": "a", "query": "up", "step": "7m", "horizon": "1h"}]})
    message = str(info.value)
    assert "series[0] ('a'): horizon 1h is not a whole number of steps of 7m (8.57)" in message
    assert "use 56m or 1h3m" in message
    assert message.count("'a'") == 1  # the label names the series; the reason does not again
    spec = parse_spec({"series": [{"name": "a", "query": "up", "step": "7m", "horizon": "56m"}]})
    assert spec.series[0].horizon_steps == 8


def test_spec_is_frozen() -> None:
    spec = parse_spec({"series": [{"name": "a", "query": "up"}]})
    with pytest.raises(Exception, match="frozen"):
        spec.series[0].name = "b"  # type: ignore[misc]


def test_split_by_requires_query(tmp_path: Path, write_spec: Any) -> None:
    path = write_spec(tmp_path / "s.yaml", [{"name": "a", "file": str(ELB), "split_by": ["x"]}])
    with pytest.raises(SpecError, match="split_by needs a Prometheus query"):
        load_spec(path)


@pytest.mark.parametrize(
    ("consumer", "message"),
    [
        ({"webhook": "http://", "secret_env": "S"}, "names no host"),
        ({"webhook": "http://exa mple.invalid/x", "secret_env": "S"}, "white space"),
        ({"webhook": "http://127.0.0.1:99999/", "secret_env": "S"}, "out of range"),
        ({"webhook": "http://[::1/", "secret_env": "S"}, "not a usable URL"),
        ({"webhook": "ftp://h/x", "secret_env": "S"}, "http:// or https://"),
        ({"webhook": "http://h/x", "secret_env": "1 bad name"}, "not an environment variable"),
        ({"secret_env": "S"}, "no webhook to sign for"),
    ],
)
@pytest.mark.parametrize("section", ["watch", "cache_warming"])
def test_webhook_settings_are_checked_when_the_spec_loads(
    section: str, consumer: dict[str, Any], message: str
) -> None:
    """A bad URL passed the prefix check and crashed every delivery (one was left
    claimed as "sending" forever); settings that do nothing were accepted silently."""
    data = {
        "defaults": {"step": "1m", "history": "1d", "horizon": "1h"},
        "series": [{"name": "s", "query": "up", section: consumer}],
    }
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


def test_watch_persist_may_be_zero_other_watch_durations_not() -> None:
    """persist: 0s opens an event on the first qualifying observation (the detector
    supports it; the spec refused it as not positive); zero stays refused elsewhere."""
    data = {
        "defaults": {"step": "1m", "history": "1d", "horizon": "1h"},
        "series": [{"name": "s", "query": "up", "watch": {"persist": "0s"}}],
    }
    watch = parse_spec(data).series[0].watch
    assert watch is not None and watch.persist == timedelta(0)
    data["series"][0]["watch"] = {"close_after": "0s"}
    with pytest.raises(SpecError, match="watch.close_after"):
        parse_spec(data)


def test_a_detector_baseline_window_shorter_than_a_step_is_refused_by_name() -> None:
    data = {
        "defaults": {"step": "1m", "history": "1d", "horizon": "1h"},
        "series": [
            {"name": "s", "query": "up", "watch": {"baseline_window": "30s", "learning": "10s"}}
        ],
    }
    with pytest.raises(
        SpecError, match=r"watch.baseline_window 30s is shorter than one step \(1m\)"
    ):
        parse_spec(data)


@pytest.mark.parametrize(
    ("series", "defaults", "message"),
    [
        (
            [{"name": "a", "query": "up"}],
            {"horizon": 24},
            "horizon: .*24 has no unit; write e.g. .24s., .24m. or .24h.",
        ),
        ([{"name": "a", "query": "up"}], {"schedule": {"publish": 1}}, "schedule interval: 1"),
        ([{"name": "a", "query": "up", "watch": {"persist": 15}}], {}, "watch.persist: 15"),
        ([{"name": "a", "query": "up"}], {"step": 60.0}, "step: .*60.0 has no unit"),
    ],
)
def test_durations_need_a_unit(tmp_path, series, defaults, message):
    """A bare YAML number was read as seconds (horizon: 24 meant as hours was 24 s, a
    YAML 1:00 was 60 s) while the quoted "300" was refused."""
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "defaults": defaults, "series": series}))
    with pytest.raises(SpecError, match=message):
        load_spec(path)
    path.write_text("version: 1\nseries:\n  - {name: a, query: up, step: 1:00}\n")
    with pytest.raises(SpecError, match="step: 60 has no unit.*YAML 1:00 is the number 60"):
        load_spec(path)
