"""What "the best fine-tune" means, in one place: stage 04 registers it, a sweep's parent run
reports it, Katib and Optuna maximise it, the trainer prints it.

A fine-tune's score is the tuned model's execution accuracy on the held-out rows; of two equal
scores the lower eval loss wins. A run with no score (failed, unfinished, not evaluated) ranks
after every scored one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SCORE = "tuned_execution_accuracy"  # higher is better
TIE_BREAK = "eval_loss"  # lower is better
OBJECTIVE = (SCORE, TIE_BREAK)


def rank_key(metrics: Mapping[str, Any], scored: bool = True) -> tuple[bool, float, float]:
    """Sort key, best first: scored runs by score (descending), then eval loss (ascending)."""
    score, loss = _number(metrics.get(SCORE)), _number(metrics.get(TIE_BREAK))
    rank = -score if scored and score is not None else None
    return (rank is None, rank or 0.0, float("inf") if loss is None else loss)


def best_first(rows: Iterable[Mapping[str, Any]]) -> list[Any]:
    """`rows` (mappings holding SCORE and TIE_BREAK, e.g. a run's metrics) best first."""
    return sorted(rows, key=rank_key)


def _number(value: Any) -> float | None:
    """`value` as a float; None for what is not a number (None, NaN)."""
    if isinstance(value, int | float) and value == value:
        return float(value)
    return None
