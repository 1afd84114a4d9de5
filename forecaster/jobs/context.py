"""What every job needs: settings, the pipeline spec, the store, sources and the registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forecaster.durations import format_duration
from forecaster.specs import PipelineSpec, SeriesSpec, load_spec
from forecaster.store.db import check_at_head, check_store_exists, make_engine, upgrade
from forecaster.store.repository import SeriesInfo, Store

if TYPE_CHECKING:
    from datetime import datetime

    from forecaster.config import Settings
    from forecaster.registry import Registry
    from forecaster.sources.base import Source

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """Long-lived dependencies of the jobs, built once per process."""

    settings: Settings
    spec: PipelineSpec
    store: Store
    _registry: Registry | None = None
    _sources: dict[str, Source] = field(default_factory=dict)
    #: series name -> (training id, loaded champion): one model per series, replaced
    #: when a new champion is trained, so memory does not grow with training cycles.
    estimator_cache: dict[str, tuple[int, Any]] = field(default_factory=dict)
    #: series name -> (clock hour, (short, long) band scales) of the publish job's recalibration.
    band_scales: dict[str, tuple[datetime, tuple[float, float]]] = field(default_factory=dict)
    #: split_by members found retired (so that each retirement is logged once).
    retired: set[str] = field(default_factory=set)
    #: series name -> when its first training (no champion yet) was last started.
    first_training: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def create(
        cls, settings: Settings, spec: PipelineSpec | None = None, *, migrate: bool = True
    ) -> JobContext:
        """Open the store (migrating it, unless ``migrate`` is false: then it must exist
        at the current schema) and load the spec named by the settings.

        Raises:
            StoreError: Without ``migrate``: no store there, or not migrated.
        """
        if not migrate:
            check_store_exists(settings.database.url)
        engine = make_engine(settings.database)
        if migrate:
            upgrade(engine)
        else:
            check_at_head(engine)
        return cls(
            settings=settings,
            spec=spec if spec is not None else load_spec(settings.pipelines),
            store=Store(engine),
        )

    @property
    def registry(self) -> Registry:
        """The MLflow registry client (created on first use)."""
        if self._registry is None:
            from forecaster.registry import Registry

            self._registry = Registry(self.settings.mlflow)
        return self._registry

    def source_for(self, spec: SeriesSpec) -> Source:
        """The source adapter that fetches ``spec``."""
        kind = spec.source
        if kind not in self._sources:
            if kind == "prometheus":
                from forecaster.sources.prometheus import PrometheusSource

                self._sources[kind] = PrometheusSource(self.settings.prometheus)
            else:
                from forecaster.sources.replay import FileSource

                self._sources[kind] = FileSource()
        return self._sources[kind]

    def members(self, spec: SeriesSpec) -> list[str]:
        """Stored series names of a spec: the series itself, or each member of a family.

        A family's retired members are left out (see :meth:`member_infos`).
        """
        return self.family_members(spec)[0]

    def family_members(self, spec: SeriesSpec) -> tuple[list[str], list[str]]:
        """A spec's stored series as (reporting, retired) names (see :meth:`member_infos`)."""
        reporting, retired = self.member_infos(spec)
        return [info.name for info in reporting], [info.name for info in retired]

    def member_infos(self, spec: SeriesSpec) -> tuple[list[SeriesInfo], list[SeriesInfo]]:
        """A spec's stored series as (reporting, retired) catalogue entries, one read.

        A plain series is reporting once stored. A ``split_by`` member whose newest
        observation is more than ``retire_after`` (default: the horizon) behind the
        family's freshest member has stopped reporting (a pod or a route that went
        away): it is retired, so it is no longer trained, published or watched, and
        comes back by itself when it reports again. Measured against the freshest
        member, not the clock, so an outage of the whole source retires nobody. Each
        change is logged once per process.
        """
        infos = self.store.list_series(family=spec.name)
        if not spec.split_by:
            return [info for info in infos if info.name == spec.name], []
        seen = [info.last_observation_at for info in infos if info.last_observation_at]
        freshest = max(seen, default=None)
        limit = spec.retire_members_after
        reporting: list[SeriesInfo] = []
        retired: list[SeriesInfo] = []
        for info in infos:
            last = info.last_observation_at
            if freshest is None or last is None or freshest - last <= limit:
                reporting.append(info)
                if info.name in self.retired:
                    self.retired.discard(info.name)
                    log.info("%s reports again: no longer retired", info.name)
                continue
            retired.append(info)
            if info.name not in self.retired:
                self.retired.add(info.name)
                log.info(
                    "%s retired: its newest observation (%s) is %s behind the freshest member "
                    "of %s (retire_after %s); it is no longer trained, published or watched "
                    "until it reports again",
                    info.name,
                    last.isoformat(),
                    format_duration(freshest - last),
                    spec.name,
                    format_duration(limit),
                )
        return reporting, retired

    def select(self, names: list[str] | None) -> list[SeriesSpec]:
        """Specs named in ``names`` (family names), or all when ``names`` is empty.

        A name given twice selects its series once (``forecaster train a a`` trained
        and registered ``a`` twice).

        Raises:
            SeriesNotFound: If a name is not in the spec.
        """
        from forecaster.errors import SeriesNotFound

        if not names:
            return list(self.spec.series)
        chosen: list[SeriesSpec] = []
        for name in dict.fromkeys(names):
            try:
                chosen.append(self.spec.get(name))
            except KeyError:
                known = ", ".join(s.name for s in self.spec.series)
                family = name.partition("{")[0]
                member = (
                    f" ({name!r} is a member of the split_by family {family!r}: "
                    f"commands take the family's name and run for all its members)"
                    if "{" in name
                    and any(s.name == family and s.split_by for s in self.spec.series)
                    else ""
                )
                raise SeriesNotFound(
                    f"series {name!r} is not in the pipeline spec{member}; known: {known}"
                ) from None
        return chosen
