"""Running ``forecaster scheduler``'s loop in a thread of the test process."""

from __future__ import annotations

import threading
from typing import Any


def scheduler_thread(ctx: Any) -> tuple[threading.Thread, list[BaseException]]:
    """``run_scheduler(ctx)`` started in a thread; the thread and the list that receives
    what it raised (the test reads it after joining)."""
    from forecaster import scheduler as scheduler_module

    failure: list[BaseException] = []

    def run() -> None:
        try:
            scheduler_module.run_scheduler(ctx, stop=threading.Event())
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, failure
