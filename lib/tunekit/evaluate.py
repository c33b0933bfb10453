"""Text-to-SQL evaluation: exact match of normalised SQL, and execution accuracy on SQLite.

Usage:
    python -m tunekit.evaluate --data rows.json --predictions predictions.jsonl

ROWS is any dataset file tunekit reads (.json array, .jsonl, .parquet of {question, context,
answer}); PREDICTIONS is JSONL with a `prediction` field per row, in the same order. Prints one
JSON object: n, exact_match, execution_accuracy, and the counts behind them.

Execution accuracy builds the tables of each row's CREATE TABLE context in an in-memory SQLite
database, fills them with rows that make the queries' conditions discriminative (they carry the
literals of the gold and the predicted SQL, and values either side of numeric ones), runs both
queries on a few such databases and compares the results: as lists when the gold query orders,
as multisets otherwise. An empty, unparsable or failing prediction is wrong, never an error.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sqlite3
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import sqlglot
from sqlglot import exp

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # predictions are often not SQL at all

DATABASES = 3  # differently filled databases a prediction must agree with the gold on
ROWS_PER_TABLE = 12
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like)


@dataclass
class Score:
    exact: bool
    execution: bool
    error: str = ""  # why the prediction could not be run, if it could not


@dataclass
class Schema:
    """Tables and their columns (name -> declared type) from a CREATE TABLE context."""

    tables: dict[str, dict[str, str]]

    @classmethod
    def from_context(cls, context: str) -> Schema:
        tables: dict[str, dict[str, str]] = {}
        for statement in sqlglot.parse(context, read="sqlite"):
            if isinstance(statement, exp.Create) and isinstance(statement.this, exp.Schema):
                name = statement.this.this.name.lower()
                tables[name] = {
                    col.name.lower(): (
                        col.args["kind"].sql("sqlite") if col.args.get("kind") else "TEXT"
                    ).upper()
                    for col in statement.this.expressions
                    if isinstance(col, exp.ColumnDef)
                }
        return cls(tables)

    @property
    def names(self) -> set[str]:
        return set(self.tables) | {c for cols in self.tables.values() for c in cols}


def parse_query(sql: str, schema: Schema) -> exp.Expression:
    """Parse one SELECT; a double-quoted name that is no table or column is a string literal.

    (SQLite reads "boston celtics" that way, and the public dataset writes literals so.)
    Raises ValueError for anything but a single SELECT query.
    """
    statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ValueError("not a single SELECT query")
    names = schema.names

    def literal_for_unknown_quoted(node: exp.Expression) -> exp.Expression:
        if (
            isinstance(node, exp.Column)
            and not node.table
            and node.this.quoted
            and node.name.lower() not in names
        ):
            return exp.Literal.string(node.name)
        return node

    return statements[0].transform(literal_for_unknown_quoted)


def normalize(query: exp.Expression) -> str:
    """One spelling per query: keyword case, whitespace, identifier case and quote style."""
    return query.sql(dialect="sqlite", normalize=True, pretty=False)


def score(row: dict[str, str], prediction: str, seed: int = 0) -> Score:
    """Exact match and execution match of `prediction` against the row's gold answer."""
    schema = Schema.from_context(row["context"])
    gold = parse_query(row["answer"], schema)  # a gold answer that does not parse is a data error
    if not prediction or not prediction.strip():
        return Score(False, False, "empty prediction")
    try:
        predicted = parse_query(prediction, schema)
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError) as e:
        return Score(False, False, f"unparsable: {str(e).splitlines()[0]}")
    exact = normalize(predicted) == normalize(gold)
    try:
        execution = exact or _same_results(row["context"], schema, gold, predicted, seed)
    except sqlite3.Error as e:
        return Score(exact, exact, f"failed on SQLite: {e}")
    return Score(exact, execution)


def evaluate(rows: list[dict[str, str]], predictions: list[str], seed: int = 0) -> dict[str, Any]:
    """Scores of `predictions` against `rows` (same order), and the per-row details."""
    if len(rows) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(rows)} rows")
    scores = [score(r, p, seed + i) for i, (r, p) in enumerate(zip(rows, predictions, strict=True))]
    n = len(scores)
    return {
        "n": n,
        "exact_match": sum(s.exact for s in scores) / n if n else 0.0,
        "execution_accuracy": sum(s.execution for s in scores) / n if n else 0.0,
        "prediction_errors": sum(bool(s.error) for s in scores),
        "scores": [asdict(s) for s in scores],
    }


def _same_results(
    context: str, schema: Schema, gold: exp.Expression, predicted: exp.Expression, seed: int
) -> bool:
    literals = _literals_by_column([gold, predicted])
    ordered = gold.args.get("order") is not None
    for trial in range(DATABASES):
        with _database(context) as db:
            _fill(db, schema, literals, random.Random(seed * DATABASES + trial))
            expected = db.execute(normalize(gold)).fetchall()
            got = db.execute(normalize(predicted)).fetchall()
        if not _equal(expected, got, ordered):
            return False
    return True


def _equal(expected: list[tuple], got: list[tuple], ordered: bool) -> bool:
    def canon(rows: list[tuple]) -> list[tuple]:
        return [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows]

    expected, got = canon(expected), canon(got)
    return expected == got if ordered else Counter(expected) == Counter(got)


def _literals_by_column(queries: list[exp.Expression]) -> dict[str, set[Any]]:
    """Values compared with each column (by name) anywhere in `queries`."""
    found: dict[str, set[Any]] = {}
    for query in queries:
        for node in query.find_all(*_COMPARISONS):
            column, literal = node.this, node.expression
            if isinstance(literal, exp.Column):
                column, literal = literal, column
            if isinstance(column, exp.Column) and isinstance(literal, exp.Literal):
                found.setdefault(column.name.lower(), set()).update(_near(literal))
    return found


def _near(literal: exp.Literal) -> list[Any]:
    """A literal's value and, for numbers, its neighbours (so > and >= differ)."""
    if literal.is_string:
        return [literal.this]
    value = float(literal.this)
    value = int(value) if value.is_integer() else value
    return [value - 1, value, value + 1]


def _fill(db: sqlite3.Connection, schema: Schema, literals: dict[str, set[Any]], rng) -> None:
    for table, columns in schema.tables.items():
        for _ in range(ROWS_PER_TABLE):
            values = [_value(col, kind, literals.get(col), rng) for col, kind in columns.items()]
            marks = ", ".join("?" * len(values))
            db.execute(f'INSERT INTO "{table}" VALUES ({marks})', values)


def _value(column: str, kind: str, seen: set[Any] | None, rng: random.Random) -> Any:
    if seen and rng.random() < 0.6:
        return rng.choice(sorted(seen, key=str))
    if "INT" in kind or "REAL" in kind or "NUM" in kind:
        return rng.randint(1, 5)  # few distinct values: joins match, groups form
    return rng.choice(["alpha", "beta", "gamma", "delta", f"{column} {rng.randint(1, 3)}"])


class _database:
    """An in-memory SQLite database with the context's tables; no files, no ATTACH."""

    def __init__(self, context: str):
        self.context = context

    def __enter__(self) -> sqlite3.Connection:
        self.db = sqlite3.connect(":memory:")
        self.db.set_authorizer(_deny_attach)
        self.db.executescript(self.context)
        self.db.set_progress_handler(_abort_after(2_000_000), 10_000)
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def _deny_attach(action: int, *args: Any) -> int:
    return (
        sqlite3.SQLITE_DENY
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH)
        else (sqlite3.SQLITE_OK)
    )


def _abort_after(steps: int):
    count = 0

    def handler() -> int:
        nonlocal count
        count += 10_000
        return 1 if count > steps else 0  # non-zero interrupts a runaway query

    return handler


def main(argv: list[str] | None = None) -> int:
    from tunekit.data import DataError, read_rows

    parser = argparse.ArgumentParser(
        prog="python -m tunekit.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="rows: .json array, .jsonl or .parquet")
    parser.add_argument("--predictions", required=True, help="JSONL with a `prediction` field")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--details", action="store_true", help="include per-row scores")
    args = parser.parse_args(argv)
    try:
        rows = read_rows(args.data)
        predictions = _read_predictions(args.predictions)
        result = evaluate(rows, predictions, args.seed)
    except (DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.details:
        result.pop("scores")
    print(json.dumps(result))
    return 0


def _read_predictions(path: str) -> list[str]:
    predictions = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {number} is not JSON ({e})") from None
            if not isinstance(record, dict) or "prediction" not in record:
                raise ValueError(f"{path}: line {number} has no `prediction` field")
            value = record["prediction"]
            predictions.append(value if isinstance(value, str) else "")
    return predictions


if __name__ == "__main__":
    raise SystemExit(main())
