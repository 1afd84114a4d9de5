"""``ConsumersRepo.latest_scores``: the newest anomaly score of every watched series.

The API's consumer view reads it every 2 s; it is looked up per watched series
through the primary key, so these tests pin what it returns on both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from forecaster.config import DatabaseSettings
from forecaster.store.consumers_repo import ConsumersRepo, ScoreRow
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import Store

T0 = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=5)


@pytest.fixture
def repo(db_url: str) -> Iterator[ConsumersRepo]:
    engine = make_engine(DatabaseSettings(url=db_url))
    upgrade(engine)
    yield ConsumersRepo(Store(engine))
    engine.dispose()


def _row(k: int, *, value: float = 1.0, score: float = 0.0, side: int = 0) -> ScoreRow:
    return ScoreRow(
        ts=T0 + k * STEP,
        value=value,
        yhat=1.0,
        yhat_lower=0.5,
        yhat_upper=1.5,
        score=score,
        side=side,
        publication_id=None,
        model="auto",
    )


def _scores(n: int, *, last_score: float, last_side: int) -> list[ScoreRow]:
    return [_row(k) for k in range(n - 1)] + [_row(n - 1, score=last_score, side=last_side)]


def _watched(repo: ConsumersRepo, name: str, scores: list[ScoreRow]) -> int:
    sid = repo.store.ensure_series(name=name, family="lat", step_seconds=300, horizon_steps=12)
    repo.save_detection(sid, state={"bar": 3.0}, open_event_id=None, transitions=[], scores=scores)
    return sid


def test_the_newest_score_of_each_watched_series_by_name(repo: ConsumersRepo) -> None:
    _watched(repo, "b_latency", _scores(300, last_score=2.5, last_side=1))
    _watched(repo, "a_latency", _scores(40, last_score=0.0, last_side=0))
    latest = repo.latest_scores()
    assert [s.series for s in latest] == ["a_latency", "b_latency"]
    assert latest[0].ts == T0 + 39 * STEP and latest[0].score == 0.0
    assert (latest[1].ts, latest[1].score, latest[1].side) == (T0 + 299 * STEP, 2.5, 1)


def test_later_runs_and_pruning_move_the_newest(repo: ConsumersRepo) -> None:
    sid = _watched(repo, "lat", _scores(10, last_score=1.5, last_side=-1))
    later = _row(20, value=9.0, score=4.0, side=1)
    repo.save_detection(sid, state={"bar": 3.0}, open_event_id=None, transitions=[], scores=[later])
    assert [(s.ts, s.score) for s in repo.latest_scores()] == [(T0 + 20 * STEP, 4.0)]
    repo.prune_scores(sid, before=T0 + 15 * STEP)
    assert [(s.ts, s.side) for s in repo.latest_scores()] == [(T0 + 20 * STEP, 1)]


def test_series_without_scores_or_without_a_detection_run_are_left_out(
    repo: ConsumersRepo,
) -> None:
    _watched(repo, "judged_nothing_yet", [])
    sid = repo.store.ensure_series(
        name="scores_only", family="lat", step_seconds=300, horizon_steps=12
    )
    repo.record_scores(sid, _scores(5, last_score=1.0, last_side=0))  # no state saved
    repo.store.ensure_series(name="unwatched", family="rps", step_seconds=300, horizon_steps=12)
    assert repo.latest_scores() == []
