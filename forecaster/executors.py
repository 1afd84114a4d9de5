"""Where estimator fits run: in-process, in local worker processes, or on a Dask cluster.

The fit step of training is a pure function of a history (see
:func:`forecaster.jobs.train.fit_history`), so it can run anywhere; the caller keeps
the side effects (MLflow, the store). Every worker pins LightGBM / cmdstan / BLAS
threads so that ``workers x threads`` never oversubscribes the cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "STAN_NUM_THREADS")


def pin_threads(threads: int = 1) -> None:
    """Limit native thread pools in this process to ``threads``."""
    for key in THREAD_ENV:
        os.environ[key] = str(threads)


class Executor(Protocol):
    """Runs ``fn`` over items; yields ``(index, result_or_exception)`` as they complete."""

    name: str

    def map_unordered(
        self, fn: Callable[[T], R], items: Sequence[T]
    ) -> Iterator[tuple[int, R | BaseException]]:
        """Apply ``fn`` to every item; exceptions are yielded, not raised."""
        ...

    def close(self) -> None:
        """Release workers."""
        ...


class SerialExecutor:
    """Runs everything in the calling thread (the default for one worker)."""

    name = "serial"

    def map_unordered(
        self, fn: Callable[[T], R], items: Sequence[T]
    ) -> Iterator[tuple[int, R | BaseException]]:
        for index, item in enumerate(items):
            try:
                yield index, fn(item)
            except Exception as exc:  # noqa: BLE001 - handed back to the caller
                yield index, exc

    def close(self) -> None:
        return None


class ProcessExecutor:
    """Local worker processes, each with pinned native threads."""

    name = "processes"

    def __init__(self, workers: int, threads_per_worker: int = 1) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            max_workers=workers, initializer=pin_threads, initargs=(threads_per_worker,)
        )

    def map_unordered(
        self, fn: Callable[[T], R], items: Sequence[T]
    ) -> Iterator[tuple[int, R | BaseException]]:
        futures: dict[Future[R], int] = {
            self._pool.submit(fn, item): index for index, item in enumerate(items)
        }
        for future in as_completed(futures):
            exc = future.exception()
            yield futures[future], exc if exc is not None else future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """A Dask distributed cluster at ``address`` (``tcp://host:8786``)."""

    name = "dask"

    def __init__(self, address: str | Any, threads_per_worker: int = 1) -> None:
        import distributed

        from forecaster.errors import ForecasterError

        client_cls: Any = distributed.Client
        try:
            self._client: Any = address if isinstance(address, client_cls) else client_cls(address)
        except (OSError, ValueError) as exc:  # unreachable (after its 30 s timeout), bad
            raise ForecasterError(
                f"cannot reach the Dask scheduler at {address} "
                f"(FORECASTER_TRAINING__DASK_ADDRESS): {exc}"
            ) from exc
        self._owns = not isinstance(address, client_cls)
        self._client.run(pin_threads, threads_per_worker)

    def map_unordered(
        self, fn: Callable[[T], R], items: Sequence[T]
    ) -> Iterator[tuple[int, R | BaseException]]:
        import distributed

        dask_completed: Any = distributed.as_completed
        futures = [self._client.submit(fn, item, pure=False) for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        for future in dask_completed(futures):
            try:
                yield index[future.key], future.result()
            except Exception as exc:  # noqa: BLE001 - handed back to the caller
                yield index[future.key], exc

    def close(self) -> None:
        if self._owns:
            self._client.close()


def make_executor(
    *, workers: int = 1, dask_address: str | None = None, threads_per_worker: int = 1
) -> Executor:
    """The executor the settings ask for: Dask when an address is set, else local.

    Workers pin their native threads to ``threads_per_worker`` (the settings'
    ``threads_per_fit``; every worker pinned one whatever it said).
    """
    if dask_address:
        return DaskExecutor(dask_address, threads_per_worker)
    if workers > 1:
        return ProcessExecutor(workers, threads_per_worker)
    return SerialExecutor()
