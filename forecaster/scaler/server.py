"""The KEDA external scaler: a gRPC ``externalscaler.ExternalScaler`` over the forecast view.

KEDA sends the trigger's ``metadata`` with every call. Keys:

``series`` (required)
    Series name in the store.
``targetPerReplica`` (required)
    Load one replica handles, in the series' unit (> 0). Returned as the metric
    target, so the HPA runs ``ceil(metric / targetPerReplica)`` replicas.
``leadTime`` (default ``5m``)
    Time a new replica needs to become ready; the metric is the max of the
    forecast over ``[now, now + leadTime]`` (and at least the observed load).
``quantile`` (default ``0.9``)
    Forecast quantile to provision for. Forecasts are published as a central
    interval at ``level`` percent, so with the default level 90 the quantiles
    0.05 (``yhat_lower``), 0.5 (``yhat``) and 0.95 (``yhat_upper``) are exact and
    anything in between is interpolated with a normal shape on each side of
    ``yhat``; quantiles outside the interval are refused (INVALID_ARGUMENT).
``minReplicas`` / ``maxReplicas`` (optional)
    Clamps applied to the planned replicas (use them in addition to the
    ScaledObject's own ``minReplicaCount`` / ``maxReplicaCount``).
``scaleDownWindow`` (default ``5m``; ``0s`` for none)
    Scale-down stabilisation of the planner (scale-up is immediate); then at most
    25% of the replicas go per 30 s, however often KEDA and the HPA ask.
``errorHeadroom`` (default ``0``, off; at most ``100``)
    Add this many times the mean absolute error of the workload's recent lead-time
    forecasts (the median forecast for the end of the lead window against the load
    then observed, last 96) to the forecast peak: more headroom while the forecast
    has been missing, less while it has been right. ``forecaster simulate`` shows
    its effect on a trace.
``activationThreshold`` (optional, opt-in scale-to-zero)
    Without it ``IsActive`` is always true. With it, ``IsActive`` is true only
    while the provisioned load exceeds the threshold.

Any key may come as ``<key>FromEnv`` (KEDA sends the environment's value under that
name); a key that is neither ours nor KEDA's own is refused. ``targetPerReplica``
must be a multiple of 0.001, the resolution KEDA hands targets to the HPA with. Each
trigger (ScaledObject and metadata) has its own stateful planner, whose memory is
saved in the store behind the answers and read back when the scaler starts; a trigger
whose metadata is edited (KEDA keeps its metric name, ``s<N>-...``) starts its new
planner from the old one's replicas and scale-down window.

Fail-safe: invalid metadata is INVALID_ARGUMENT, an unknown series NOT_FOUND, a
series without a forecast FAILED_PRECONDITION, a stale forecast or a store outage
UNAVAILABLE, each with a message; the scaler never answers 0, NaN, Inf, a negative
value or ``IsActive=false`` because of trouble, so KEDA's ``fallback`` applies.
``GetMetricSpec`` answers from the metadata alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import math
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from forecaster.consumers.planner import (
    MAX_ERROR_HEADROOM,
    MAX_REPLICAS,
    ReplicaPlanner,
    ScalingPolicy,
    target_too_fine,
)
from forecaster.consumers.scaling import (
    ForecastUnusable,
    LatestObservations,
    PlannerBook,
    ScalingAnswer,
    ScalingQuery,
    answer,
)
from forecaster.durations import parse_duration
from forecaster.errors import (
    ForecasterError,
    ForecastNotFound,
    InputDataError,
    SeriesNotFound,
    StoreError,
    nearest_name,
)

if TYPE_CHECKING:
    from forecaster.api.view import ForecastView
    from forecaster.config import Settings

log = logging.getLogger(__name__)

# The generated protocol modules are loaded by name so that mypy does not type-check
# generated code (its .pyi stub documents the messages for editors).
pb2: Any = importlib.import_module("forecaster.scaler.externalscaler_pb2")
pb2_grpc: Any = importlib.import_module("forecaster.scaler.externalscaler_pb2_grpc")

DEFAULT_LEAD_TIME = "5m"
DEFAULT_QUANTILE = 0.9
#: Largest value of the deprecated int64 fields (``targetSize``, ``metricValue``).
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class TriggerMetadata:
    """Validated trigger metadata of one ScaledObject."""

    query: ScalingQuery
    activation_threshold: float | None
    metric_name: str


def _number(metadata: Mapping[str, str], key: str) -> float | None:
    raw = metadata.get(key)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InputDataError(f"metadata {key}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise InputDataError(f"metadata {key}={raw!r} must be finite")
    return value


def _count(metadata: Mapping[str, str], key: str) -> int | None:
    value = _number(metadata, key)
    if value is None:
        return None
    if value < 0 or value != int(value) or value > MAX_REPLICAS:
        raise InputDataError(
            f"metadata {key}={metadata[key]!r} must be a whole number from 0 to {MAX_REPLICAS}"
        )
    return int(value)


def metric_name_for(series: str) -> str:
    """A Kubernetes-safe metric name for ``series`` (KEDA adds its ``s<N>-`` prefix)."""
    slug = re.sub(r"[^a-z0-9]+", "-", series.lower()).strip("-")
    return f"forecast-{slug or 'series'}"[:200]


def parse_metadata(metadata: Mapping[str, str]) -> TriggerMetadata:
    """Validate the trigger metadata (see the module docstring for the keys).

    KEDA sends the same metadata on every poll, so valid answers are cached.

    Raises:
        InputDataError: Naming the missing or invalid key.
    """
    return _parse_cached(tuple(sorted(metadata.items())))


@functools.lru_cache(maxsize=4096)
def _parse_cached(items: tuple[tuple[str, str], ...]) -> TriggerMetadata:
    return _parse(dict(items))


#: The trigger metadata keys this scaler reads (KEDA adds its own, e.g. scalerAddress).
METADATA_KEYS = (
    "series",
    "targetPerReplica",
    "leadTime",
    "quantile",
    "minReplicas",
    "maxReplicas",
    "scaleDownWindow",
    "errorHeadroom",
    "activationThreshold",
)


#: Keys of KEDA's own in an external trigger's metadata (its connection settings,
#: ``tlsCertFile`` from KEDA before 2.9).
KEDA_KEYS = (
    "scalerAddress",
    "enableTLS",
    "unsafeSsl",
    "caCert",
    "tlsClientCert",
    "tlsClientKey",
    "tlsCertFile",
)


def _resolve_from_env(metadata: Mapping[str, str]) -> dict[str, str]:
    """The metadata with ``<key>FromEnv`` read as ``<key>``.

    KEDA resolves a ``FromEnv`` key's value from the workload's environment but sends
    it under the ``FromEnv`` name (``leadTimeFromEnv: 1h``): it was ignored and the
    default planned for (``maxReplicasFromEnv`` clamped nothing).

    Raises:
        InputDataError: A key given both ways.
    """
    out = dict(metadata)
    for key in [k for k in metadata if k.endswith("FromEnv")]:
        stem = key.removesuffix("FromEnv")
        if stem not in METADATA_KEYS:
            continue
        if stem in metadata:
            raise InputDataError(f"metadata sets both {stem!r} and {key!r}; keep one")
        out[stem] = out.pop(key)
    return out


def _check_keys(metadata: Mapping[str, str]) -> None:
    """Refuse a key this scaler does not read (KEDA's own keys pass).

    ``leadtime`` or ``lead_time`` for ``leadTime`` was ignored and the 5-minute
    default planned for; so were ``lead``, ``minReplicaCount`` and every other key
    not close enough to ours to be caught as a misspelling.
    """
    for key in metadata:
        if key in METADATA_KEYS or key in KEDA_KEYS:
            continue
        near = nearest_name(key, METADATA_KEYS, cutoff=0.6)
        hint = f"did you mean {near!r}? " if near else ""
        raise InputDataError(
            f"metadata key {key!r} is not one this scaler reads; {hint}it reads "
            f"{', '.join(METADATA_KEYS)} (case-sensitive; <key>FromEnv too)"
        )


def _check_target(target: float, raw: str) -> None:
    """Refuse a target KEDA cannot pass on as it is (:func:`target_too_fine`)."""
    if target_too_fine(target):
        raise InputDataError(
            f"metadata targetPerReplica={raw!r} is finer than the 0.001 KEDA passes to the "
            "HPA; use a multiple of 0.001 (or scale the series to a smaller unit)"
        )


def _parse(metadata: Mapping[str, str]) -> TriggerMetadata:
    metadata = _resolve_from_env(metadata)
    _check_keys(metadata)
    series = (metadata.get("series") or "").strip()
    if not series:
        raise InputDataError("metadata 'series' is required (the series name to scale on)")
    target = _number(metadata, "targetPerReplica")
    if target is None:
        raise InputDataError(
            "metadata 'targetPerReplica' is required (load one replica handles, > 0)"
        )
    if target <= 0:
        raise InputDataError(
            f"metadata targetPerReplica={metadata['targetPerReplica']!r} must be > 0"
        )
    _check_target(target, metadata["targetPerReplica"])
    lead_text = (metadata.get("leadTime") or "").strip() or DEFAULT_LEAD_TIME
    try:
        lead = parse_duration(lead_text, what="metadata leadTime")
    except ValueError as exc:
        raise InputDataError(str(exc)) from None
    quantile = _number(metadata, "quantile")
    if quantile is None:
        quantile = DEFAULT_QUANTILE
    if not 0 < quantile < 1:
        raise InputDataError(f"metadata quantile={metadata['quantile']!r} must be in (0, 1)")
    window_text = (metadata.get("scaleDownWindow") or "").strip() or "5m"
    try:
        window = parse_duration(window_text, what="metadata scaleDownWindow", allow_zero=True)
    except ValueError as exc:
        raise InputDataError(str(exc)) from None
    headroom = _number(metadata, "errorHeadroom")
    if headroom is not None and not 0 <= headroom <= MAX_ERROR_HEADROOM:
        raise InputDataError(
            f"metadata errorHeadroom={metadata['errorHeadroom']!r} must be from 0 "
            f"to {MAX_ERROR_HEADROOM:g}"
        )
    activation = _number(metadata, "activationThreshold")
    if activation is not None and activation < 0:
        raise InputDataError(
            f"metadata activationThreshold={metadata['activationThreshold']!r} must be >= 0"
        )
    minimum = _count(metadata, "minReplicas")
    maximum = _count(metadata, "maxReplicas")
    if minimum is None:
        minimum = 0 if activation is not None else 1
    if maximum is not None and maximum < max(minimum, 1):
        # named as the metadata names it (the policy's own error said "max_replicas")
        raise InputDataError(
            f"metadata maxReplicas={metadata['maxReplicas']!r} must be at least 1 and at "
            f"least minReplicas ({minimum}{'' if 'minReplicas' in metadata else ', the default'})"
        )
    try:
        policy = ScalingPolicy(
            target_per_replica=target,
            min_replicas=minimum,
            max_replicas=maximum,
            scale_down_window_seconds=window.total_seconds(),
            error_headroom=headroom or 0.0,
        )
    except InputDataError as exc:
        raise InputDataError(f"metadata: {exc}") from None
    return TriggerMetadata(
        query=ScalingQuery(
            series=series, policy=policy, lead_seconds=lead.total_seconds(), quantile=quantile
        ),
        activation_threshold=activation,
        metric_name=metric_name_for(series),
    )


#: Longest error detail sent (it travels in a trailer, which gRPC caps at 8-16 KiB).
MAX_DETAILS = 2000


def status_for(exc: ForecasterError) -> grpc.StatusCode:
    """The gRPC status of a forecaster error (only ``scaler/`` chooses gRPC codes)."""
    if isinstance(exc, InputDataError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, SeriesNotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, ForecastNotFound):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, ForecastUnusable | StoreError):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


class ExternalScalerServicer:
    """``externalscaler.ExternalScaler`` over the forecast view (no database access per call)."""

    def __init__(
        self,
        view: ForecastView,
        observations: LatestObservations | None = None,
        *,
        stale_after_seconds: float,
        max_view_age_seconds: float = 120.0,
        stream_interval_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
        planners: PlannerBook | None = None,
    ) -> None:
        self.view = view
        self.observations = observations
        self.stale_after_seconds = stale_after_seconds
        self.max_view_age_seconds = max_view_age_seconds
        self.stream_interval_seconds = stream_interval_seconds
        self.clock = clock
        self.planners = PlannerBook() if planners is None else planners

    def _answer(
        self, ref: Any, *, stateful: bool, metric_name: str = ""
    ) -> tuple[TriggerMetadata, ScalingAnswer]:
        meta = parse_metadata(ref.scalerMetadata)
        now = self.clock()

        def plan(planner: ReplicaPlanner | None) -> ScalingAnswer:
            return answer(
                self.view,
                meta.query,
                now=now,
                stale_after_seconds=self.stale_after_seconds,
                max_view_age_seconds=self.max_view_age_seconds,
                observations=self.observations,
                planner=planner,
            )

        if not stateful:
            return meta, plan(None)
        # per trigger: two triggers on one series in one ScaledObject (different
        # lead times) replaced each other's planner, skipping the scale-down window
        key = (
            ref.namespace,
            ref.name,
            *sorted(f"{k}={v}" for k, v in ref.scalerMetadata.items()),
        )
        labels = (f"{ref.namespace}/{ref.name}", meta.query.series)
        # KEDA names each trigger's metric s<N>-...: an edited trigger keeps its name, and
        # its new planner starts from the old one's replica memory
        lineage = (ref.namespace, ref.name, metric_name) if metric_name else None
        return meta, self.planners.decide(
            key, meta.query.policy, now, plan, labels=labels, lineage=lineage
        )

    @staticmethod
    def _active(meta: TriggerMetadata, result: ScalingAnswer) -> bool:
        if meta.activation_threshold is None:
            return True
        return result.decision.load > meta.activation_threshold

    @staticmethod
    async def _abort(context: aio.ServicerContext[Any, Any], ref: Any, exc: Exception) -> None:
        if isinstance(exc, ForecasterError):
            code = status_for(exc)
            message = str(exc)
        else:
            log.exception("scaler failed on %s/%s", ref.namespace, ref.name)
            code = grpc.StatusCode.INTERNAL
            message = f"internal error: {exc.__class__.__name__}: {exc}"
        details = f"{ref.namespace}/{ref.name}: {message}"
        if len(details) > MAX_DETAILS:
            # the details travel in a trailer (grpc-message, 8-16 KiB at most): a message
            # echoing a huge series name became RESOURCE_EXHAUSTED instead of its code
            details = details[: MAX_DETAILS - 20] + f"... ({len(details)} chars)"
        await context.abort(code, details)

    async def GetMetricSpec(  # noqa: N802 - gRPC method name
        self, request: Any, context: aio.ServicerContext[Any, Any]
    ) -> Any:
        """Metric name and target per replica, from the metadata alone."""
        try:
            meta = parse_metadata(request.scalerMetadata)
        except InputDataError as exc:
            await self._abort(context, request, exc)
            raise
        target = meta.query.policy.target_per_replica
        spec = pb2.MetricSpec(
            metricName=meta.metric_name,
            targetSize=min(max(1, round(target)), INT64_MAX),
            targetSizeFloat=target,
        )
        return pb2.GetMetricSpecResponse(metricSpecs=[spec])

    async def GetMetrics(  # noqa: N802 - gRPC method name
        self, request: Any, context: aio.ServicerContext[Any, Any]
    ) -> Any:
        """The load the planner provisions for (``ceil(value / target)`` = planned replicas)."""
        ref = request.scaledObjectRef
        try:
            meta, result = self._answer(ref, stateful=True, metric_name=request.metricName)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a gRPC status
            await self._abort(context, ref, exc)
            raise
        value = result.decision.value
        if not (math.isfinite(value) and value > 0):  # defensive: the planner guarantees it
            await context.abort(grpc.StatusCode.INTERNAL, f"planner produced {value!r}")
        return pb2.GetMetricsResponse(
            metricValues=[
                pb2.MetricValue(
                    metricName=request.metricName or meta.metric_name,
                    metricValue=min(math.ceil(value), INT64_MAX),
                    metricValueFloat=value,
                )
            ]
        )

    async def IsActive(  # noqa: N802 - gRPC method name
        self, request: Any, context: aio.ServicerContext[Any, Any]
    ) -> Any:
        """True unless ``activationThreshold`` is set and the load is at or below it."""
        try:
            meta, result = self._answer(request, stateful=False)
        except Exception as exc:  # noqa: BLE001
            await self._abort(context, request, exc)
            raise
        return pb2.IsActiveResponse(result=self._active(meta, result))

    async def StreamIsActive(  # noqa: N802 - gRPC method name
        self, request: Any, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """``IsActive`` every ``stream_interval_seconds`` until the client goes away."""
        while True:
            try:
                meta, result = self._answer(request, stateful=False)
            except Exception as exc:  # noqa: BLE001
                await self._abort(context, request, exc)
                raise
            yield pb2.IsActiveResponse(result=self._active(meta, result))
            await asyncio.sleep(self.stream_interval_seconds)


class ScalerHandle:
    """A scaler server running on its own event-loop thread (see :func:`start_scaler`)."""

    def __init__(
        self,
        *,
        port: int,
        servicer: ExternalScalerServicer,
        loop: asyncio.AbstractEventLoop,
        server: aio.Server,
        thread: threading.Thread,
        refresher: threading.Thread,
        saver: threading.Thread,
        stop_refresh: threading.Event,
        on_stop: Callable[[], None],
    ) -> None:
        self.port = port
        self.servicer = servicer
        self._loop = loop
        self._server = server
        self._thread = thread
        self._refresher = refresher
        self._saver = saver
        self._stop_refresh = stop_refresh
        self._on_stop = on_stop
        self._stopped = False

    @property
    def view(self) -> ForecastView:
        """The forecast view the server answers from."""
        return self.servicer.view

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds) and release the store."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_refresh.set()
        future = asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout=grace + 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._refresher.join(timeout=10)
        self._saver.join(timeout=60)
        planners = self.servicer.planners
        if planners.loaded:  # else saving would overwrite states never read back
            try:
                planners.flush(self.servicer.clock())
            except ForecasterError as exc:
                log.warning("planner state not saved at stop: %s", exc)
        self._on_stop()


def start_scaler(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    refresh_seconds: float = 2.0,
    stream_interval_seconds: float = 10.0,
    max_view_age_seconds: float | None = None,
    view: ForecastView | None = None,
    persist_seconds: float = 5.0,
) -> ScalerHandle:
    """Start the scaler in background threads and return once it listens.

    Args:
        settings: Store location (``database``), bind address (``scaler``) and the
            staleness bound (``schedule.stale_after_seconds``).
        host: Bind address (default ``settings.scaler.host``).
        port: Port (default ``settings.scaler.port``; 0 picks a free one).
        refresh_seconds: How often the forecast view is reloaded from the store.
        stream_interval_seconds: Period of ``StreamIsActive`` answers.
        max_view_age_seconds: A view older than this counts as a store outage
            (default ``max(30, 10 * refresh_seconds)``).
        view: An existing view to serve from (its store is used for observations).
        persist_seconds: How often the planners that decided are saved to the store
            (off the answering path; also at :meth:`ScalerHandle.stop`). Their saved
            state is read before the first answer, so a restarted scaler keeps the
            scale-down windows and steps it had started.

    Raises:
        ForecasterError: When the address cannot be bound.
    """
    from forecaster.api.view import ForecastView
    from forecaster.store.db import make_engine
    from forecaster.store.planner_states import PlannerStates
    from forecaster.store.repository import Store

    engine = None
    if view is None:
        engine = make_engine(settings.database)
        view = ForecastView(Store(engine))
    observations = LatestObservations(view.store)
    planners = PlannerBook(
        states=PlannerStates(view.store.engine), persist_every_seconds=persist_seconds
    )
    servicer = ExternalScalerServicer(
        view,
        observations,
        stale_after_seconds=float(settings.schedule.stale_after_seconds),
        max_view_age_seconds=max_view_age_seconds or max(30.0, 10 * refresh_seconds),
        stream_interval_seconds=stream_interval_seconds,
        planners=planners,
    )
    address = f"{host or settings.scaler.host}:{settings.scaler.port if port is None else port}"
    # the saved planner states are read before the first answer (and, if the store is
    # down now, before the view loads, which every stateful answer waits for)
    planners.load(servicer.clock())

    stop_refresh = threading.Event()

    def refresh_loop() -> None:
        while True:
            try:
                planners.load(servicer.clock())  # until read: before the view loads
                view.refresh()
                observations.refresh()
            except Exception:  # pragma: no cover - refresh() already catches store errors
                log.exception("scaler view refresh crashed")
            if stop_refresh.wait(refresh_seconds):
                return

    def save_loop() -> None:
        # its own thread: a save waits for the store's write lock (SQLite's busy timeout
        # is 30 s while the scheduler writes), which stalled the view refresh behind it
        # until the scaler answered UNAVAILABLE
        while not stop_refresh.wait(persist_seconds):
            try:
                if planners.loaded:
                    planners.persist(servicer.clock())
            except Exception:  # pragma: no cover - persist() already catches store errors
                log.exception("planner state save crashed")

    refresher = threading.Thread(target=refresh_loop, name="scaler-view-refresh", daemon=True)
    refresher.start()
    saver = threading.Thread(target=save_loop, name="scaler-planner-save", daemon=True)
    saver.start()

    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    async def start() -> None:
        server = aio.server()
        pb2_grpc.add_ExternalScalerServicer_to_server(servicer, server)
        tls = settings.scaler
        if tls.tls_cert is not None and tls.tls_key is not None:
            import grpc

            credentials = grpc.ssl_server_credentials(
                [(tls.tls_key.read_bytes(), tls.tls_cert.read_bytes())],
                root_certificates=None if tls.client_ca is None else tls.client_ca.read_bytes(),
                require_client_auth=tls.client_ca is not None,
            )
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
        await server.start()
        started["server"] = server
        started["port"] = bound

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except Exception as exc:  # noqa: BLE001 - reported to the caller below
            started["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="scaler-grpc", daemon=True)
    thread.start()
    ready.wait(timeout=30)

    def release() -> None:
        if engine is not None:
            engine.dispose()

    if "error" in started or "server" not in started:
        stop_refresh.set()
        refresher.join(timeout=10)
        saver.join(timeout=60)
        release()
        raise ForecasterError(
            f"cannot start the scaler on {address}: {started.get('error', 'timed out')}"
        )
    log.info("KEDA external scaler listening on %s (port %s)", address, started["port"])
    return ScalerHandle(
        port=int(started["port"]),
        servicer=servicer,
        loop=loop,
        server=started["server"],
        thread=thread,
        refresher=refresher,
        saver=saver,
        stop_refresh=stop_refresh,
        on_stop=release,
    )


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    refresh_seconds: float = 2.0,
    on_ready: Callable[[ScalerHandle], None] | None = None,
) -> None:
    """Run the scaler until Ctrl-C or SIGTERM."""
    from forecaster.api.view import freeze_startup_heap

    handle = start_scaler(settings, host=host, port=port, refresh_seconds=refresh_seconds)
    handle.view.refresh()  # loaded before the freeze (the refresh thread may not be done)
    freeze_startup_heap()
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if on_ready is not None:
        on_ready(handle)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
