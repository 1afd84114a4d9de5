"""What every job needs: settings, the pipeline spec, the store, sources and the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forecaster.specs import PipelineSpec, SeriesSpec, load_spec
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import Store

if TYPE_CHECKING:
    from datetime import datetime

    from forecaster.config import Settings
    from forecaster.registry import Registry
    from forecaster.sources.base import Source


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

    @classmethod
    def create(cls, settings: Settings, spec: PipelineSpec | None = None) -> JobContext:
        """Open the store (migrating it) and load the spec named by the settings."""
        engine = make_engine(settings.database)
        upgrade(engine)
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
        """Stored series names of a spec: the series itself, or each member of a family."""
        if spec.split_by:
            return [info.name for info in self.store.list_series(family=spec.name)]
        names = {info.name for info in self.store.list_series(family=spec.name)}
        return [spec.name] if spec.name in names else []

    def select(self, names: list[str] | None) -> list[SeriesSpec]:
        """Specs named in ``names`` (family names), or all when ``names`` is empty.

        Raises:
            SeriesNotFound: If a name is not in the spec.
        """
        from forecaster.errors import SeriesNotFound

        if not names:
            return list(self.spec.series)
        chosen = []
        for name in names:
            try:
                chosen.append(self.spec.get(name))
            except KeyError:
                known = ", ".join(s.name for s in self.spec.series)
                raise SeriesNotFound(
                    f"series {name!r} is not in the pipeline spec; known: {known}"
                ) from None
        return chosen
