"""The evaluation sets that ship with the kit, and the one rule about them: what chooses reads
validation data only; the test set is reported and chooses nothing.

- `validation` (eval_sets/validation/): what chooses. Stage 04's ranking, a sweep's objective
  (Optuna locally, Katib on GKE) and the recipe search read its scores (`tunekit.objective`).
  It holds the set of unseen schemas (`unseen_schemas.jsonl`, made by tools/make_unseen_set.py:
  the tutorial's question first, the generator's question shapes over tables and values of its
  own) and 110 questions written by hand, the way people ask (`handwritten.jsonl`).
- `test` (eval_sets/test/): what reports. 180 questions written by hand, by someone who had
  not read the generator, about everyday tables and in the public dataset's WikiSQL
  conventions; none of them, names and values set aside, is a sentence the generator makes
  (tests/test_eval_sets.py). Every fine-tune scores its base and tuned model on it and logs the
  numbers and the answers; nothing that ranks, searches or stops reads it
  (tests/test_eval_sets.py fails if anything does).

Rows are `{question, context, answer}` with a `style`: `unseen-schema`, `everyday` or
`wikisql`. Metrics on a set are named `<set>_<model>_...` (`validation_tuned_execution_accuracy`).
"""

from __future__ import annotations

import json
from pathlib import Path

SETS_DIR = Path(__file__).parent / "eval_sets"
VALIDATION = "validation"  # chooses
TEST = "test"  # reports, chooses nothing
SETS = (VALIDATION, TEST)
STYLE = "style"  # which kind of question a row is
UNSEEN_FILE = SETS_DIR / VALIDATION / "unseen_schemas.jsonl"


def files(name: str) -> list[Path]:
    """The JSONL files of set `name`, in order."""
    if name not in SETS:
        raise ValueError(f"no evaluation set {name!r}: the sets are {', '.join(SETS)}")
    return sorted(
        (SETS_DIR / name).glob("*.jsonl"), key=lambda p: (p.name != "unseen_schemas.jsonl", p.name)
    )


def rows(name: str) -> list[dict[str, str]]:
    """The rows of set `name` (`validation` or `test`), each with its `style`."""
    found = []
    for path in files(name):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                row.setdefault(STYLE, "unseen-schema")
                found.append(row)
    return found


def validation_rows(limit: int = 0) -> list[dict[str, str]]:
    """What chooses: the validation set (`limit` > 0: that many rows spread over it)."""
    return spread(rows(VALIDATION), limit)


def test_rows(limit: int = 0) -> list[dict[str, str]]:
    """What reports: the test set (`limit` > 0: that many rows spread over it). Nothing that
    chooses may call this."""
    return spread(rows(TEST), limit)


def spread(found: list[dict[str, str]], limit: int) -> list[dict[str, str]]:
    """`limit` rows taken at even steps through `found` (every style has some); all for 0."""
    if not limit or limit >= len(found):
        return found
    return [found[i * len(found) // limit] for i in range(limit)]


def prefix(name: str) -> str:
    """The prefix of the metrics on set `name`."""
    return f"{name}_"
