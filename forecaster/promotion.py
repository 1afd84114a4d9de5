"""The metric gate that decides whether a newly trained model may serve a series."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

#: The backtest statistic (a key of :func:`forecaster.evaluation.score_backtest`) that
#: the gate compares and that ``auto`` ranks its candidates by, so that the gate never
#: refuses what selection just picked: the mean MASE over the backtest origins. A median
#: (or trimmed mean) would let a candidate that blows up on a few origins win selection
#: and then fail, or worse pass, a gate that must charge those misses.
GATE_METRIC: Final = "mase"


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the promotion gate, with a sentence saying why."""

    promote: bool
    reason: str


def gate(
    *,
    candidate: str,
    candidate_mase: float,
    baseline: str,
    baseline_mase: float,
    champion: str | None,
    champion_mase: float | None,
    tolerance: float = 0.0,
) -> GateDecision:
    """Decide whether ``candidate`` becomes the champion.

    All MASE values must be :data:`GATE_METRIC` of the same rolling-origin backtest
    windows (the statistic ``auto`` selected by). The
    candidate is promoted when it beats the seasonal-naive ``baseline`` strictly
    and is no worse than the current champion (within ``tolerance``, a fraction).
    With no champion yet, the baseline itself may be promoted when it is the
    candidate: something must serve, and it is the documented fallback. A candidate
    without a backtest score (a cold start) replaces a champion without one too.

    Args:
        candidate: Name of the candidate estimator.
        candidate_mase: Its backtest MASE.
        baseline: Name of the baseline (seasonal naive).
        baseline_mase: The baseline's MASE on the same windows.
        champion: Name of the current champion, if any.
        champion_mase: The champion's MASE on the same windows, if known.
        tolerance: Allowed relative slack against the champion.
    """
    if not math.isfinite(candidate_mase):
        if champion is not None and (champion_mase is None or not math.isfinite(champion_mase)):
            # a cold start: neither was backtested (less than two days of history), and
            # the newer fit has seen more of it; refused, the first hours' last-value
            # repeat served until a backtest was possible
            return GateDecision(
                True,
                f"cold start: {candidate} has no backtest MASE yet and neither has the "
                f"champion {champion}; the newer fit, on more history, replaces it",
            )
        return GateDecision(False, f"{candidate} has no finite backtest MASE")
    if champion is None and candidate == baseline:
        return GateDecision(
            True,
            f"no champion yet; the baseline {baseline} (MASE {candidate_mase:.3f}) serves "
            "as the fallback",
        )
    if math.isfinite(baseline_mase) and not candidate_mase < baseline_mase:
        return GateDecision(
            False,
            f"{candidate} MASE {candidate_mase:.3f} does not beat the baseline {baseline} "
            f"({baseline_mase:.3f})",
        )
    if champion is not None and champion_mase is not None and math.isfinite(champion_mase):
        if candidate_mase > champion_mase * (1.0 + tolerance):
            return GateDecision(
                False,
                f"{candidate} MASE {candidate_mase:.3f} is worse than the champion {champion} "
                f"({champion_mase:.3f})",
            )
        return GateDecision(
            True,
            f"{candidate} MASE {candidate_mase:.3f} beats the baseline ({baseline_mase:.3f}) "
            f"and matches or beats the champion {champion} ({champion_mase:.3f})",
        )
    return GateDecision(
        True,
        f"{candidate} MASE {candidate_mase:.3f} beats the baseline {baseline} "
        f"({baseline_mase:.3f}); no comparable champion",
    )
