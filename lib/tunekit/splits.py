"""The rows a fine-tune trains and is evaluated on: read and split (`tunekit.data`), the
held-out rows run on SQLite first (`tunekit.evaluate.check_row`): a gold answer or context the
evaluator cannot judge stops the run before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunekit.data import FILE_SUFFIXES, DataError, held_out_indices, read_rows, split_rows

MAX_LISTED = 5  # bad held-out rows named in one error


def check_file_rows(settings: Any) -> None:
    """For a data file: its rows are valid, more than `eval_size`, and the held-out ones can be
    judged (DataError if not)."""
    if Path(settings.dataset).suffix not in FILE_SUFFIXES:
        return
    rows = read_rows(settings.dataset)
    rows = rows[: settings.dataset_limit] if settings.dataset_limit else rows
    if settings.eval_size >= len(rows):
        raise DataError(
            f"{settings.dataset}: eval_size: must be smaller than the number of rows ({len(rows)})"
        )
    check_held_out(rows, held_out_indices(len(rows), settings.eval_size, settings.seed), settings)


def load_splits(settings: Any) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The (train, eval) rows the settings ask for: read, limited, split, held-out rows checked."""
    rows = read_rows(settings.dataset, synthetic_rows=settings.synthetic_rows, seed=settings.seed)
    rows = rows[: settings.dataset_limit] if settings.dataset_limit else rows
    train, held_out = split_rows(rows, settings.eval_size, settings.seed)
    check_held_out(rows, held_out_indices(len(rows), settings.eval_size, settings.seed), settings)
    return train, held_out


def check_held_out(rows: list[dict[str, str]], indices: list[int], settings: Any) -> None:
    """The held-out rows' context and gold answer parse and run on SQLite within the evaluator's
    limits (`tunekit.evaluate.check_row`); a DataError names the rows that do not."""
    from tunekit.evaluate import check_row  # sqlglot: only where rows are checked

    bad = [(i, reason) for i in indices if (reason := check_row(rows[i], settings.seed))]
    if bad:
        listed = "; ".join(f"row {i}: {reason}" for i, reason in bad[:MAX_LISTED])
        more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        raise DataError(
            f"{settings.dataset}: {len(bad)} held-out row(s) cannot be evaluated: {listed}{more}. "
            "Fix or remove them, or hold out other rows (seed, eval_size)"
        )
