"""Run jobs over many series: error isolation per series, job-run records, progress bars."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, TypeVar

from forecaster.errors import ForecasterError

if TYPE_CHECKING:
    from forecaster.executors import Executor
    from forecaster.jobs.context import JobContext
    from forecaster.jobs.train import TrainResult
    from forecaster.specs import SeriesSpec

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class RunSummary:
    """What a job run did: results per series and errors per series."""

    job: str
    results: list[Any] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no series failed."""
        return not self.errors

    @property
    def unregistered(self) -> list[str]:
        """Series whose training finished but never reached MLflow (:func:`unregistered`
        says why); only a train run has any."""
        return [r.series for r in self.results if getattr(r, "registry_error", None) is not None]


def run_guarded(
    ctx: JobContext,
    job: str,
    series: str,
    fn: Callable[[], T],
    summary: RunSummary,
    *,
    record: bool = True,
    describe: Callable[[T], str] | None = None,
    took: float = 0.0,
    failure: Callable[[T], str | None] | None = None,
) -> T | None:
    """Run ``fn`` for one series: an error is logged, recorded as a failed job run and
    kept in ``summary.errors`` instead of stopping the other series.

    A forecaster error is expected (its message says what is wrong); any other
    exception is a bug or an unforeseen input, logged with its traceback and
    recorded as ``crashed: <type>: <message>``, and the other series still run.
    Success is recorded as a job run too (unless ``record`` is false) with
    ``describe(result)`` as its detail (default: a JSON summary of the result).
    ``took`` is the seconds the work took before ``fn`` (a fit done elsewhere), so
    the recorded run covers it. ``failure(result)``, when it returns a message, records
    a run that returned as failed with that message (a training that MLflow failed
    for); the result is still kept in ``summary.results``.
    """
    started = datetime.now(UTC) - timedelta(seconds=took)
    try:
        result = fn()
    except Exception as exc:
        if isinstance(exc, ForecasterError):
            message = str(exc)
            log.error("%s %s failed: %s", job, series, exc)
        else:
            message = f"crashed: {type(exc).__name__}: {exc}"
            log.exception("%s %s %s", job, series, message)
        summary.errors[series] = message
        ctx.store.record_job_run(
            job=job,
            series=series,
            started_at=started,
            finished_at=datetime.now(UTC),
            ok=False,
            detail=message,
        )
        return None
    problem = None if failure is None else failure(result)
    if problem is not None or record:
        if problem is None:
            detail = describe(result) if describe else json.dumps(_describe(result))
        ctx.store.record_job_run(
            job=job,
            series=series,
            started_at=started,
            finished_at=datetime.now(UTC),
            ok=problem is None,
            detail=detail if problem is None else problem,
        )
    summary.results.append(result)
    return result


def run_ingest(ctx: JobContext, specs: list[SeriesSpec], *, progress: bool = False) -> RunSummary:
    """Ingest every spec'd series; one failing series does not stop the others."""
    from forecaster.jobs.ingest import ingest_series

    summary = RunSummary("ingest")
    for spec in _progress(specs, "ingest", progress, lambda spec: spec.name):
        run_guarded(ctx, "ingest", spec.name, partial(ingest_series, ctx, spec=spec), summary)
    return summary


def run_train(
    ctx: JobContext,
    specs: list[SeriesSpec],
    *,
    progress: bool = False,
    n_jobs: int | None = None,
    executor: Executor | None = None,
    only: Collection[str] | None = None,
) -> RunSummary:
    """Train every stored member of every spec'd series (or the members in ``only``).

    Fits fan out over ``executor`` (default: from the training settings: local
    processes, or Dask when an address is set); logging, gating and recording
    happen here, in the calling process.
    """
    from forecaster.executors import make_executor
    from forecaster.jobs.train import fit_history, prepare_fit, record_fit

    summary = RunSummary("train")
    training = ctx.settings.training
    threads = n_jobs or training.threads_per_fit
    prepared = RunSummary("train")
    specs_of = {}
    for spec in specs:
        members = ctx.members(spec)
        if not members:
            summary.errors[spec.name] = f"series {spec.name!r} has no history yet; run ingest first"
        for name in members if only is None else [m for m in members if m in only]:
            specs_of[name] = spec
            run_guarded(
                ctx,
                "train",
                name,
                partial(prepare_fit, ctx, spec=spec, name=name, n_jobs=threads),
                prepared,
                record=False,
            )
    summary.errors.update(prepared.errors)
    tasks = prepared.results
    if not tasks:
        return summary
    own = executor is None
    try:
        runner = executor or make_executor(
            workers=min(training.workers, len(tasks)),
            dask_address=training.dask_address,
            threads_per_worker=threads,
        )
    except ForecasterError as exc:  # the Dask scheduler cannot be reached: each fails
        for task in tasks:
            run_guarded(ctx, "train", task.series, partial(_raise, exc), summary)
        return summary
    bar = _bar(len(tasks), "train", progress)
    try:
        for index, outcome in runner.map_unordered(fit_history, tasks):
            task = tasks[index]
            if bar is not None:
                bar.set_postfix_str(task.series[:40])
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, ForecasterError):
                    log.exception("fit of %s crashed", task.series, exc_info=outcome)
                outcome = ForecasterError(f"fit failed: {outcome.__class__.__name__}: {outcome}")
                run_guarded(ctx, "train", task.series, partial(_raise, outcome), summary)
            else:
                run_guarded(
                    ctx,
                    "train",
                    task.series,
                    partial(
                        record_fit, ctx, spec=specs_of[task.series], task=task, outcome=outcome
                    ),
                    summary,
                    took=outcome.seconds,  # the fit, done in the pool (the run recorded
                    # only the registration after it: 0.7 s for an 8 s training)
                    failure=unregistered,
                )
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if own:
            runner.close()
        release_memory()
    return summary


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs ldconfig)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_memory() -> bool:
    """Return freed heap pages to the OS after a job (glibc ``malloc_trim``).

    A long-lived scheduler allocates hundreds of MB during training and frees most
    of it; glibc keeps the freed pages in its arenas, so RSS would stay at the
    training peak and drift with fragmentation. Returns False where there is no
    glibc (musl, macOS): nothing is done there.
    """
    import gc

    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def unregistered(result: TrainResult) -> str | None:
    """Why a training that completed is still a failed train run: MLflow failed for it.

    Such a run was recorded as a success, so ``forecaster status`` said ``ok`` and the
    pipeline-health metrics counted no error while nothing reached the registry and no
    champion changed (a tracking server down for days, or its URI mistyped).
    """
    if result.registry_error is None:
        return None
    outcome = (
        "the new champion is recorded in the store only"
        if result.promoted
        else "the champion did not change"
    )
    return f"not registered, {outcome}: {result.registry_error}"


def _raise(exc: BaseException) -> None:
    raise exc


def _bar(total: int, label: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="series", dynamic_ncols=True)


def run_publish(
    ctx: JobContext,
    specs: list[SeriesSpec],
    *,
    progress: bool = False,
    skip: Collection[str] = (),
) -> RunSummary:
    """Publish a fresh forecast for every stored member (but those in ``skip``)."""
    from forecaster.jobs.publish import publish_series

    summary = RunSummary("publish")
    work = []
    for spec in specs:
        members = ctx.members(spec)
        if not members:
            summary.errors[spec.name] = (
                f"series {spec.name!r} has no history yet; run ingest and train first"
            )
        work += [(spec, name) for name in members if name not in skip]
    for spec, name in _progress(work, "publish", progress, lambda item: item[1]):
        run_guarded(
            ctx,
            "publish",
            name,
            partial(publish_series, ctx, spec=spec, name=name),
            summary,
        )
    release_memory()
    return summary


def _progress(
    items: list[T], label: str, enabled: bool, name_of: Callable[[T], str]
) -> Iterator[T]:
    """Iterate ``items`` behind a tqdm progress bar (on stderr) when ``enabled``."""
    bar = _bar(len(items), label, enabled and bool(items))
    try:
        for item in items:
            if bar is not None:
                bar.set_postfix_str(name_of(item)[:40])
            yield item
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _describe(result: Any) -> dict[str, Any]:
    """A small JSON summary of a job result for the ``job_runs.detail`` column."""
    out: dict[str, Any] = {}
    written = getattr(result, "written", None)
    if isinstance(written, dict):
        out["points"] = int(sum(written.values()))
        out["series"] = len(written)
    for key in ("points", "chosen", "promoted", "model_name", "seconds"):
        value = getattr(result, key, None)
        if value is not None and key not in out:
            out[key] = value
    return out
