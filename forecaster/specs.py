"""Declarative pipeline specs: which series to forecast, from which query, how far ahead.

A spec is a YAML file (see ``pipelines/``) validated into frozen models at start-up::

    version: 1
    defaults:
      step: 5m            # sampling step of the history and of the forecast
      history: 28d        # how much history training may use
      horizon: 24h        # how far ahead forecasts are published
      estimators: [seasonal_naive, prophet, lightgbm]
      schedule: {publish: 1m, train: "0 3 * * *"}
    series:
      - name: checkout_rps
        query: sum(rate(http_requests_total{service="checkout"}[5m]))
        kind: load
      - name: checkout_rps_by_route
        query: sum by (route) (rate(http_requests_total{service="checkout"}[5m]))
        split_by: [route]
      - name: demo_rps
        file: ../data/nab/realAWSCloudwatch/elb_request_count_8c0756.csv

Every series has exactly one source: ``query`` (Prometheus) or ``file`` (a CSV
replayed as if it came from Prometheus).
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forecaster.durations import format_duration, parse_duration
from forecaster.errors import SpecError
from forecaster.timeseries import read_utf8

SERIES_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KNOWN_ESTIMATORS = ("seasonal_naive", "last_value", "prophet", "lightgbm")
#: Observations a training needs (``forecaster.jobs.train.MIN_POINTS`` is this).
TRAIN_MIN_POINTS = 12
MAX_HORIZON = timedelta(days=35)
MAX_HISTORY = timedelta(days=400)


def _duration(value: Any, what: str, *, allow_zero: bool = False) -> timedelta:
    """A spec duration, written with its unit (``5m``, ``24h``).

    A bare YAML number was taken as seconds (``horizon: 24`` meant as hours was 24 s,
    ``step: 1:00`` YAML's sexagesimal 60 s) while the quoted ``"300"`` was refused.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            f"{what}: {value!r} has no unit; write e.g. '{value}s', '{value}m' or "
            f"'{value}h' (a bare number would be seconds; a YAML 1:00 is the number 60)"
        )
    return parse_duration(value, what=what, allow_zero=allow_zero)


class ScheduleSpec(BaseModel):
    """When each job runs for a series. ``ingest`` defaults to the series step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ingest: timedelta | None = None
    publish: timedelta = timedelta(minutes=1)
    train: str = "0 3 * * *"

    @field_validator("ingest", "publish", mode="before")
    @classmethod
    def _dur(cls, value: Any) -> Any:
        return None if value is None else _duration(value, "schedule interval")

    @field_validator("train")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(
                f"train must be a 5-field cron expression like '0 3 * * *', got {value!r}"
            )
        from apscheduler.triggers.cron import CronTrigger

        try:  # the scheduler builds this trigger; out-of-range fields fail there otherwise
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid cron expression: {exc}") from None
        return value


class _ConsumerSpec(BaseModel):
    """Shared fields of the consumer settings: an optional signed webhook."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    webhook: str | None = None
    secret_env: str | None = None

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook must be an http:// or https:// URL, got {value!r}")
        problem = _url_problem(value)
        if problem:
            raise ValueError(f"webhook {value!r} is not a usable URL: {problem}")
        return value

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(
                f"secret_env {value!r} is not an environment variable name (letters, digits "
                "and _, not starting with a digit)"
            )
        return value

    @model_validator(mode="after")
    def _secret(self) -> _ConsumerSpec:
        if self.webhook is not None and not self.secret_env:
            raise ValueError(
                "a webhook needs secret_env: the environment variable holding its HMAC secret"
            )
        if self.secret_env is not None and self.webhook is None:
            raise ValueError("secret_env is set but there is no webhook to sign for")
        return self


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _url_problem(url: str) -> str:
    """What makes ``url`` unusable as a webhook (empty when nothing does)."""
    from urllib.parse import urlsplit

    if any(c.isspace() for c in url):
        return "it contains white space (encode it as %20)"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in 0-65535
    except ValueError as exc:
        return str(exc)
    if not parts.hostname:
        return "it names no host"
    if port == 0:
        return "port 0 is not a port to send to"
    return ""


class WatchSpec(_ConsumerSpec):
    """Regression detection for a series: ``watch: {direction: up, persist: 15m}``.

    ``baseline_quantile`` (default 0.999; ``null`` turns it off), ``baseline_window``,
    ``learning`` and ``baseline_refresh`` set the adaptive bar, ``instant_factor``
    the single-score trigger (see :mod:`forecaster.consumers.regressions`).
    """

    direction: Literal["up", "down", "both"] = "both"
    persist: timedelta = timedelta(minutes=15)
    min_score: float = Field(1.0, ge=1.0)
    close_after: timedelta | None = None
    #: The same range as ``forecaster detect --baseline-quantile`` (below the median the
    #: bar is a typical score, mostly 0).
    baseline_quantile: float | None = Field(0.999, ge=0.5, le=0.99999)
    baseline_window: timedelta = timedelta(days=14)
    learning: timedelta = timedelta(days=1)
    baseline_refresh: timedelta | None = None  # None: before every observation
    instant_factor: float = Field(2.0, ge=1.0)

    @field_validator(
        "persist", "close_after", "baseline_window", "learning", "baseline_refresh", mode="before"
    )
    @classmethod
    def _dur(cls, value: Any, info: Any) -> Any:
        if value is None:
            return None
        # persist: 0s opens an event on the first qualifying observation
        zero = info.field_name == "persist"
        return _duration(value, f"watch.{info.field_name}", allow_zero=zero)

    @model_validator(mode="after")
    def _learning_fits(self) -> WatchSpec:
        if self.learning > self.baseline_window:
            raise ValueError(
                f"watch.learning ({format_duration(self.learning)}) is longer than "
                f"watch.baseline_window ({format_duration(self.baseline_window)}): the bar "
                "would never be learnt"
            )
        return self


class CacheWarmingSpec(_ConsumerSpec):
    """Cache-warming pushes for a series: ``cache_warming: {lead: 10m, webhook: ...}``."""

    lead: timedelta = timedelta(minutes=10)
    min_increase: float = Field(0.3, gt=0)
    within: timedelta = timedelta(hours=24)

    @field_validator("lead", "within", mode="before")
    @classmethod
    def _dur(cls, value: Any, info: Any) -> Any:
        return _duration(value, f"cache_warming.{info.field_name}")

    @model_validator(mode="after")
    def _lead_fits(self) -> CacheWarmingSpec:
        if self.within < self.lead:
            # a window is pushed when warm_at (its start - lead) comes, but only once its
            # start is within reach: a ramp starting between the two got less than lead
            raise ValueError(
                f"cache_warming.within ({format_duration(self.within)}) is shorter than "
                f"cache_warming.lead ({format_duration(self.lead)}): a ramp starting "
                "between them would be pushed less than lead ahead; make within at least lead"
            )
        return self


class Defaults(BaseModel):
    """Values every series inherits unless it sets its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: timedelta = timedelta(minutes=5)
    history: timedelta = timedelta(days=28)
    horizon: timedelta = timedelta(hours=24)
    estimators: tuple[str, ...] = ("seasonal_naive", "prophet", "lightgbm")
    schedule: ScheduleSpec = ScheduleSpec()

    @field_validator("step", "history", "horizon", mode="before")
    @classmethod
    def _dur(cls, value: Any) -> Any:
        return _duration(value, "duration")


class SeriesSpec(BaseModel):
    """One series (or, with ``split_by``, one family of series) to forecast."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    query: str | None = None
    file: Path | None = None
    split_by: tuple[str, ...] = ()
    kind: Literal["load", "latency", "other"] = "load"
    unit: str = ""
    description: str = ""
    step: timedelta
    history: timedelta
    horizon: timedelta
    estimators: tuple[str, ...]
    schedule: ScheduleSpec
    watch: WatchSpec | None = None
    cache_warming: CacheWarmingSpec | None = None
    #: A ``split_by`` member this far behind the family's freshest member is retired:
    #: no longer trained, published or watched until it reports again. None = the horizon.
    retire_after: timedelta | None = None

    @property
    def source(self) -> Literal["prometheus", "file"]:
        """Which source adapter fetches this series."""
        return "prometheus" if self.query is not None else "file"

    @property
    def horizon_steps(self) -> int:
        """Forecast length in steps."""
        return int(self.horizon / self.step)

    @property
    def history_steps(self) -> int:
        """Training window length in steps."""
        return int(self.history / self.step)

    @property
    def ingest_every(self) -> timedelta:
        """How often new history is ingested (defaults to the step)."""
        return self.schedule.ingest or self.step

    @property
    def retire_members_after(self) -> timedelta:
        """How far behind the family's freshest member a member is retired."""
        return self.retire_after or self.horizon

    @field_validator("step", "history", "horizon", mode="before")
    @classmethod
    def _dur(cls, value: Any, info: Any) -> Any:
        return _duration(value, info.field_name)

    @field_validator("retire_after", mode="before")
    @classmethod
    def _retire_dur(cls, value: Any) -> Any:
        return None if value is None else _duration(value, "retire_after")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SERIES_NAME.match(value):
            raise ValueError(
                f"series name {value!r} must match {SERIES_NAME.pattern} "
                "(letters, digits, _ . : -; at most 128 characters)"
            )
        return value

    @field_validator("split_by")
    @classmethod
    def _labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for label in value:
            if not LABEL_NAME.match(label):
                raise ValueError(f"split_by label {label!r} is not a valid Prometheus label name")
        if len(set(value)) != len(value):
            raise ValueError(f"split_by lists a label twice: {list(value)}")
        return value

    @field_validator("estimators")
    @classmethod
    def _estimators(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("estimators must name at least one estimator")
        for name in value:
            if name not in KNOWN_ESTIMATORS:
                raise ValueError(
                    f"unknown estimator {name!r}; choose from {', '.join(KNOWN_ESTIMATORS)}"
                )
        if len(set(value)) != len(value):
            raise ValueError(f"an estimator is listed twice: {list(value)}")
        return value

    @field_validator("query")
    @classmethod
    def _query(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("query is empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SeriesSpec:
        if (self.query is None) == (self.file is None):
            raise ValueError("give exactly one source, 'query' (Prometheus) or 'file'")
        if self.file is not None and self.split_by:
            raise ValueError("split_by needs a Prometheus query")
        if self.step < timedelta(seconds=1):
            raise ValueError("step must be at least 1s")
        if self.query is not None and self.step % timedelta(seconds=1):
            # it loaded, then every ingest failed
            raise ValueError(
                f"step {format_duration(self.step)} is not a whole number of seconds, "
                "which Prometheus range queries need"
            )
        if self.horizon < self.step:
            raise ValueError("horizon is shorter than one step")
        if self.horizon % self.step:
            steps = self.horizon / self.step
            raise ValueError(
                f"horizon {format_duration(self.horizon)} is not a whole "
                f"number of steps of {format_duration(self.step)} ({steps:.2f}); use "
                f"{format_duration(self.step * int(steps))} or "
                f"{format_duration(self.step * (int(steps) + 1))}"
            )
        if self.horizon > MAX_HORIZON:
            raise ValueError(f"horizon longer than {MAX_HORIZON.days} days")
        if self.history > MAX_HISTORY:
            raise ValueError(f"history longer than {MAX_HISTORY.days} days")
        if self.history < TRAIN_MIN_POINTS * self.step:
            # it loaded, then every training failed "(run ingest first)", which no
            # ingest could fix
            raise ValueError(
                f"history {format_duration(self.history)} covers fewer than the "
                f"{TRAIN_MIN_POINTS} steps of {format_duration(self.step)} a training "
                f"needs; use at least {format_duration(TRAIN_MIN_POINTS * self.step)}"
            )
        if self.horizon_steps > 5000:
            raise ValueError(f"horizon/step = {self.horizon_steps} steps; at most 5000")
        if self.watch is not None and self.watch.baseline_quantile is not None:
            span = self.watch.baseline_window
            if span < self.step:
                raise ValueError(
                    f"watch.baseline_window {format_duration(span)} is shorter than one step "
                    f"({format_duration(self.step)}): the bar needs scores to learn from"
                )
        if self.retire_after is not None:
            if not self.split_by:
                raise ValueError(
                    "retire_after applies to split_by families only (a member that stops "
                    "reporting is retired; a single series that stops is an outage)"
                )
            if self.retire_after < self.step:
                raise ValueError(
                    f"retire_after {format_duration(self.retire_after)} is shorter than one "
                    f"step ({format_duration(self.step)}): every member would be retired "
                    "between two observations"
                )
        return self


class PipelineSpec(BaseModel):
    """A whole spec file: defaults plus the list of series."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    series: tuple[SeriesSpec, ...] = Field(min_length=1)
    path: Path | None = None

    def get(self, name: str) -> SeriesSpec:
        """The series spec named ``name`` (a family name for split series)."""
        for spec in self.series:
            if spec.name == name:
                return spec
        raise KeyError(name)


def parse_spec(data: Any, *, path: Path | None = None) -> PipelineSpec:
    """Validate already-loaded YAML ``data`` into a :class:`PipelineSpec`.

    Relative ``file`` paths are resolved against the spec file's folder.

    Raises:
        SpecError: Naming the file, the series and the field that is wrong.
    """
    where = str(path) if path else "<spec>"
    if not isinstance(data, dict):
        raise SpecError(f"{where}: the top level must be a mapping with a 'series' list")
    unknown = set(data) - {"version", "defaults", "series"}
    if unknown:
        raise SpecError(
            f"{where}: unknown top-level key(s) {sorted(unknown, key=str)}; "
            "allowed: version, defaults, series"
        )
    version = data.get("version", 1)
    if version == "1":
        raise SpecError(
            f"{where}: version must be the number 1, not the string '1'; drop the quotes"
        )
    if version != 1 or isinstance(version, bool):
        raise SpecError(
            f"{where}: unsupported spec version {version!r}; this release reads version 1"
        )
    try:
        defaults = Defaults.model_validate(data.get("defaults") or {})
    except ValidationError as exc:
        raise SpecError(f"{where}: defaults: {_explain(exc)}") from exc
    given_defaults = data.get("defaults") or {}
    raw_series = data.get("series")
    if not isinstance(raw_series, list) or not raw_series:
        raise SpecError(f"{where}: 'series' must be a non-empty list")
    series: list[SeriesSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(raw_series):
        label = f"series[{index}]"
        if not isinstance(item, dict):
            raise SpecError(f"{where}: {label} must be a mapping")
        if "name" in item:
            label = f"series[{index}] ({item['name']!r})"
        merged: dict[str, Any] = {
            "step": defaults.step,
            "history": defaults.history,
            "horizon": defaults.horizon,
            "estimators": defaults.estimators,
            "schedule": defaults.schedule.model_dump(),
        }
        for key, value in item.items():
            if key == "schedule" and isinstance(value, dict):
                merged["schedule"] = {**merged["schedule"], **value}
            else:
                merged[key] = value
        if isinstance(merged.get("file"), str) and not merged["file"].strip():
            raise SpecError(f"{where}: {label}: file is empty; give the CSV file's path")
        if merged.get("file") is not None and path is not None:
            file_path = Path(str(merged["file"]))
            if not file_path.is_absolute():
                merged["file"] = (path.parent / file_path).resolve()
        try:
            spec = SeriesSpec.model_validate(merged)
        except ValidationError as exc:
            message = _explain(exc)
            inherited = [  # what the series takes from the spec's defaults block
                key
                for key in ("step", "history", "horizon", "estimators", "schedule")
                if key in given_defaults and key not in item and re.search(rf"\b{key}", message)
            ]
            if inherited:
                message += f" ({', '.join(inherited)} from defaults)"
            raise SpecError(f"{where}: {label}: {message}") from exc
        if spec.name in seen:
            raise SpecError(f"{where}: {label}: duplicate series name {spec.name!r}")
        if spec.file is not None and spec.file.is_dir():
            raise SpecError(f"{where}: {label}: file {str(spec.file)!r} is a directory")
        if spec.file is not None and not spec.file.is_file():
            raise SpecError(f"{where}: {label}: file {str(spec.file)!r} does not exist")
        seen.add(spec.name)
        series.append(spec)
    return PipelineSpec(version=1, series=tuple(series), path=path)


class _SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    Plain YAML keeps the last value silently: a second ``series:`` dropped every
    series of the first list, a second ``step:`` overrode the first unseen.
    Keys brought in by a merge (``<<: *defaults``) may still be overridden.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The mapping of ``node``; a repeated key is a ``ConstructorError`` naming both lines."""
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                earlier = first_line.get(key)
            except TypeError:  # unhashable: SafeLoader refuses it with its own message
                continue
            if earlier is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found key {key!r} twice (first on line {earlier})",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate the YAML spec at ``path``.

    Raises:
        SpecError: If the file is missing, is not YAML, or is invalid.
    """
    spec_path = Path(path)
    if spec_path.is_dir():
        raise SpecError(f"pipeline spec {str(spec_path)!r} is a directory, not a YAML file")
    if not spec_path.is_file():
        raise SpecError(f"pipeline spec {str(spec_path)!r} does not exist")
    try:
        text = read_utf8(spec_path)
    except ValueError as exc:
        raise SpecError(f"{spec_path}: {exc}; save the spec as UTF-8") from None
    stream = io.StringIO(text)
    stream.name = str(spec_path)  # YAML errors name the file, not "<unicode string>"
    try:
        data = yaml.load(stream, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError(f"{spec_path}: not valid YAML: {exc}") from exc
    return parse_spec(data, path=spec_path.resolve())


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        if loc and msg.startswith(f"{loc}: "):  # the validator already named the field
            msg = msg.removeprefix(f"{loc}: ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
