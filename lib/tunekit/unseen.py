"""The evaluation set of unseen schemas: text-to-SQL rows whose tables, columns and values the
synthetic generator never produces (tests/test_unseen.py checks every word of them).

Held-out rows come from the same generator as the training rows; a model that scores well on
them may still have memorised the generator's names. Every fine-tune is also scored on these
rows (metrics `unseen_<model>_exact_match`, `unseen_<model>_execution_accuracy`): a model that
copies from the context what the question asks scores well on both, one that memorised does not.
The set ships with the kit (`eval_sets/unseen_schemas.jsonl`, made by
`tools/make_unseen_set.py`); the tutorial's own question is its first row.
"""

from __future__ import annotations

import json
from pathlib import Path

UNSEEN_FILE = Path(__file__).parent / "eval_sets" / "unseen_schemas.jsonl"
PREFIX = "unseen_"  # of the metrics scored on this set


def unseen_rows() -> list[dict[str, str]]:
    """The rows of the unseen-schema set, in their order."""
    return [json.loads(line) for line in UNSEEN_FILE.read_text().splitlines() if line.strip()]
