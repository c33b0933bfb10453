"""Datasets of `{question, context, answer}` rows: load, validate, split.

Every problem with a dataset is a DataError that names the file and the row (a JSONL file's line
when the line cannot be read). `tunekit.splits` gives a fine-tune its rows, the held-out ones
checked by the evaluator.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

FIELDS = ("question", "context", "answer")
FILE_SUFFIXES = (".json", ".jsonl", ".parquet")
MAX_ROW_BYTES = 64 * 1024  # question, context and answer together (UTF-8): prompts stay small


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

        try:
            return pd.read_parquet(path).to_dict(orient="records")
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for what it cannot read
            raise DataError(f"{path}: not a readable parquet file ({_first_line(e)})") from None
    data = path.read_bytes()
    if path.suffix == ".jsonl":
        return _read_jsonl(path, data)
    try:
        rows = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (at byte {e.start}: {e.reason})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON array of rows, got {type(rows).__name__}")
    return rows


def _read_jsonl(path: Path, data: bytes) -> list[Any]:
    """One row per line (a string may hold U+2028 and the like: lines end at \\n only)."""
    rows = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}: line {number} is not UTF-8 text (byte {e.start} of the line: {e.reason})"
            ) from None
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}: line {number} is not valid JSON ({e.msg}, column {e.colno})"
            ) from None
    return rows


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


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
        size = sum(len(row[f].encode("utf-8", "surrogatepass")) for f in FIELDS)
        if size > MAX_ROW_BYTES:
            raise DataError(
                f"{source}: row {i} is {size:,} bytes, more than the {MAX_ROW_BYTES:,} "
                "a row may hold (question, context and answer together)"
            )
        clean.append({f: row[f] for f in FIELDS})
    if not clean:
        raise DataError(f"{source}: no rows")
    return clean


def preview_examples(train: list[dict[str, str]], n: int = 3) -> Any:
    """The first `n` training examples as the model sees them (a pandas DataFrame)."""
    import pandas as pd

    from tunekit.prompts import build_example

    return pd.DataFrame([build_example(r, eos_token="<eos>") for r in train[:n]])


def split_rows(
    rows: list[dict[str, str]], eval_size: int, seed: int
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A deterministic (train, eval) split: the same rows and seed give the same split."""
    if not 0 < eval_size < len(rows):
        raise DataError(
            f"eval_size={eval_size} must be between 1 and the number of rows - 1 ({len(rows) - 1})"
        )
    held_out = held_out_indices(len(rows), eval_size, seed)
    chosen = set(held_out)
    train = [r for i, r in enumerate(rows) if i not in chosen]
    return train, [rows[i] for i in held_out]


def held_out_indices(count: int, eval_size: int, seed: int) -> list[int]:
    """The positions (ascending) of the held-out rows among `count` rows."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return sorted(order[:eval_size])
