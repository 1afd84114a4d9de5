"""Reads and writes of the KEDA scaler's planner state (table ``planner_state``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from forecaster.errors import StoreError
from forecaster.store.consumer_tables import planner_state_table
from forecaster.store.repository import _dialect_insert

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class PlannerStateRow:
    """One trigger's planner state.

    Attributes:
        key: The trigger's digest (see :func:`forecaster.consumers.scaling.trigger_digest`).
        scaled_object: ``namespace/name`` of the ScaledObject (for people reading the table).
        series: The series it scales on.
        state: :meth:`~forecaster.consumers.planner.ReplicaPlanner.snapshot`.
    """

    key: str
    scaled_object: str
    series: str
    state: dict[str, Any]


class PlannerStates:
    """The ``planner_state`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, *, since: datetime) -> dict[str, dict[str, Any]]:
        """The states written at or after ``since``, by key.

        Raises:
            StoreError: The store cannot be read.
        """
        table = planner_state_table
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(table.c.key, table.c.state).where(table.c.updated_at >= since)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the planner state: {_first_line(exc)}") from exc
        states: dict[str, dict[str, Any]] = {}
        for key, text in rows:
            try:
                state = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue  # not restored: the planner starts afresh
            if isinstance(state, dict):
                states[str(key)] = state
        return states

    def save(self, rows: Sequence[PlannerStateRow], *, at: datetime) -> None:
        """Insert or replace ``rows``, stamped ``at``.

        Raises:
            StoreError: The store cannot be written.
        """
        if not rows:
            return
        table = planner_state_table
        try:
            with self.engine.begin() as conn:
                stmt = _dialect_insert(conn)(table)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[table.c.key],
                    set_={
                        "scaled_object": stmt.excluded.scaled_object,
                        "series": stmt.excluded.series,
                        "state": stmt.excluded.state,
                        "updated_at": stmt.excluded.updated_at,
                    },
                )
                conn.execute(
                    stmt,
                    [
                        {
                            "key": row.key,
                            "scaled_object": row.scaled_object[:600],
                            "series": row.series[:300],
                            # non-finite numbers become null (restore drops them)
                            "state": orjson.dumps(row.state).decode(),
                            "updated_at": at,
                        }
                        for row in rows
                    ],
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write the planner state: {_first_line(exc)}") from exc

    def prune(self, *, before: datetime) -> int:
        """Delete the states last written before ``before``; returns how many.

        Raises:
            StoreError: The store cannot be written.
        """
        table = planner_state_table
        try:
            with self.engine.begin() as conn:
                result = conn.execute(delete(table).where(table.c.updated_at < before))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prune the planner state: {_first_line(exc)}") from exc
        return int(result.rowcount or 0)


def _first_line(exc: Exception) -> str:
    """SQLAlchemy's message goes on with the statement and a link: the first line says
    what failed (``no such table: planner_state`` on a store not migrated yet)."""
    return (str(exc).splitlines() or [""])[0]
