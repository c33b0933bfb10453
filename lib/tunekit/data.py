"""Datasets of `{question, context, answer}` rows: load, validate, split."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

FIELDS = ("question", "context", "answer")
FILE_SUFFIXES = (".json", ".jsonl", ".parquet")


class DataError(ValueError):
    """A dataset that cannot be used; the message names the row and the field."""


def read_rows(source: str, *, synthetic_rows: int = 0, seed: int = 0) -> list[dict[str, str]]:
    """Rows from `synthetic`, a .json (array)/.jsonl/.parquet file, or a Hugging Face id."""
    if source == "synthetic":
        from tunekit.synthetic import generate

        return generate(synthetic_rows, seed=seed)
    path = Path(source).expanduser()
    if path.suffix in FILE_SUFFIXES:
        if not path.is_file():
            raise DataError(f"dataset file {path} does not exist")
        return validate_rows(_read_file(path), source)
    from datasets import load_dataset

    try:
        dataset = load_dataset(source, split="train")
    except Exception as e:  # the Hub, offline mode and local folders each raise their own
        raise DataError(f"cannot load dataset {source!r}: {str(e).splitlines()[0]}") from None
    return validate_rows(list(dataset), source)


def _read_file(path: Path) -> list[Any]:
    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict(orient="records")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            rows = json.loads(text)
            if not isinstance(rows, list):
                raise DataError(f"{path}: expected a JSON array of rows, got {type(rows).__name__}")
            return rows
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def validate_rows(rows: list[Any], source: str) -> list[dict[str, str]]:
    """Keep the three fields; a missing, non-string or empty one is an error naming the row."""
    clean = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{source}: row {i} is a {type(row).__name__}, expected an object")
        for field in FIELDS:
            value = row.get(field)
            if field not in row:
                raise DataError(f"{source}: row {i}: field '{field}' is missing")
            if not isinstance(value, str):
                raise DataError(
                    f"{source}: row {i}: field '{field}' must be a string, "
                    f"got {type(value).__name__}"
                )
            if not value.strip():
                raise DataError(f"{source}: row {i}: field '{field}' is empty")
        clean.append({f: row[f] for f in FIELDS})
    if not clean:
        raise DataError(f"{source}: no rows")
    return clean


def check_file_rows(settings: Any) -> None:
    """For a data file: its rows are valid and more than `eval_size` (DataError if not)."""
    if Path(settings.dataset).suffix not in FILE_SUFFIXES:
        return
    rows = read_rows(settings.dataset)
    count = min(len(rows), settings.dataset_limit or len(rows))
    if settings.eval_size >= count:
        raise DataError(
            f"{settings.dataset}: eval_size: must be smaller than the number of rows ({count})"
        )


def load_splits(settings: Any) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The (train, eval) rows the settings ask for: read, limited, split."""
    rows = read_rows(settings.dataset, synthetic_rows=settings.synthetic_rows, seed=settings.seed)
    rows = rows[: settings.dataset_limit] if settings.dataset_limit else rows
    return split_rows(rows, settings.eval_size, settings.seed)


def preview_examples(run: Any, n: int = 3) -> Any:
    """The first `n` training examples as the model sees them (a pandas DataFrame)."""
    import pandas as pd

    from tunekit.backends import backend_for
    from tunekit.prompts import build_example

    if (splits := backend_for(run).training_rows(run)) is None:
        return None
    train, _ = splits
    return pd.DataFrame([build_example(r, eos_token="<eos>") for r in train[:n]])


def split_rows(
    rows: list[dict[str, str]], eval_size: int, seed: int
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A deterministic (train, eval) split: the same rows and seed give the same split."""
    if not 0 < eval_size < len(rows):
        raise DataError(
            f"eval_size={eval_size} must be between 1 and the number of rows - 1 ({len(rows) - 1})"
        )
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held_out = set(order[:eval_size])
    train = [r for i, r in enumerate(rows) if i not in held_out]
    return train, [rows[i] for i in sorted(held_out)]
