"""What "the best fine-tune" means, in one place: stage 04 registers it, a sweep's parent run
reports it, Katib and Optuna maximise it, the trainer prints it.

A fine-tune's `score` is the mean of its tuned model's execution accuracy on the held-out rows
(the data it was trained on: in distribution) and on the validation set (`tunekit.eval_sets`:
tables the training data never had, and questions written by hand the way people ask). A
model must both fit its data and carry the skill to new tables and new wording: one that
memorised the training rows scores at most half. Of two equal scores the lower eval loss wins.
A run with no score (failed, unfinished, not evaluated, or evaluated before the validation
set existed) ranks after every scored one.

The test set's metrics (`test_...`) are not among the parts: what chooses reads validation
data only (tests/test_eval_sets.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

SCORE: Final = "score"  # higher is better
TIE_BREAK = "eval_loss"  # lower is better
OBJECTIVE = (SCORE, TIE_BREAK)
# The score's parts, weighed equally
COMPONENTS = ("tuned_execution_accuracy", "validation_tuned_execution_accuracy")


def score(metrics: Mapping[str, Any]) -> float | None:
    """The score of a run's metrics (the mean of COMPONENTS), None without all of them."""
    parts = [_number(metrics.get(name)) for name in COMPONENTS]
    if any(part is None for part in parts):
        return None
    return sum(p for p in parts if p is not None) / len(parts)


def rank_key(metrics: Mapping[str, Any], scored: bool = True) -> tuple[bool, float, float]:
    """Sort key, best first: scored runs by score (descending), then eval loss (ascending)."""
    value, loss = score(metrics), _number(metrics.get(TIE_BREAK))
    rank = -value if scored and value is not None else None
    return (rank is None, rank or 0.0, float("inf") if loss is None else loss)


def best_first(rows: Iterable[Mapping[str, Any]]) -> list[Any]:
    """`rows` (mappings holding the COMPONENTS and TIE_BREAK, e.g. a run's metrics) best
    first."""
    return sorted(rows, key=rank_key)


def _number(value: Any) -> float | None:
    """`value` as a float; None for what is not a number (None, NaN)."""
    if isinstance(value, int | float) and value == value:
        return float(value)
    return None
