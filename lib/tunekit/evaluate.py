"""Text-to-SQL evaluation: exact match of normalised SQL, and execution accuracy on SQLite.

Usage:
    python -m tunekit.evaluate --data rows.json --predictions predictions.jsonl

ROWS is any dataset file tunekit reads (.json array, .jsonl, .parquet of {question, context,
answer}); PREDICTIONS is JSONL with a `prediction` field per row, in the same order. Prints one
JSON object: n, exact_match, execution_accuracy, and the counts behind them (with --details,
every row's score and the reason it is wrong or cannot be judged).

Execution accuracy builds the tables of each row's CREATE TABLE context in an in-memory SQLite
database, fills them with rows that make the queries' conditions discriminative (they carry the
literals of the gold and the predicted SQL, and values either side of numeric ones), runs both
queries on a few such databases and compares the results: as lists when the gold query orders,
as multisets otherwise. An empty, unparsable or failing prediction is wrong, never an error; a
prediction identical to the gold answer (once normalised) is right without being run.

Every statement runs under limits, each with a fresh budget (the context script, the filling of
the tables, the gold answer, the prediction): QUERY_STEPS SQLite instructions and QUERY_SECONDS,
strings and blobs up to VALUE_BYTES, RESULT_ROWS and RESULT_BYTES fetched, queries up to
QUERY_CHARS; all SQLite memory of the process stays under SQLITE_HEAP_BYTES. Nothing reaches a file
(no ATTACH, no VACUUM INTO, no PRAGMA), and printf/format are refused (one call can outlast every
limit). A prediction past a limit is wrong; its error names the limit. A row whose context or gold
answer does not parse, fails or runs past a limit cannot be judged: its `gold_error` says why, it
is counted in `gold_errors` and left out of both accuracies.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # predictions are often not SQL at all

DATABASES = 3  # differently filled databases a prediction must agree with the gold on
ROWS_PER_TABLE = 12
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like)

# The limits of one statement (the gold answers of the public dataset take a few hundred steps)
QUERY_STEPS = 2_000_000  # SQLite virtual-machine instructions
QUERY_SECONDS = 1.0  # wall-clock time
VALUE_BYTES = 8 * 1024  # longest string or blob (SQLITE_LIMIT_LENGTH): trim() takes n*m in one call
SQL_BYTES = 64 * 1024  # longest statement or context script (SQLITE_LIMIT_SQL_LENGTH)
RESULT_ROWS = 10_000  # rows fetched
RESULT_BYTES = 16 * 1024 * 1024  # text and blobs fetched
QUERY_CHARS = 20_000  # longest gold answer or prediction that is parsed at all
SQLITE_HEAP_BYTES = 128 * 1024 * 1024  # PRAGMA hard_heap_limit: all of SQLite in this process
PROGRESS_EVERY = 100  # instructions between two looks at the budget (about one row)
FILL_LITERAL_CHARS = 1000  # longer string literals are not planted in the tables


@dataclass
class Score:
    exact: bool
    execution: bool
    error: str = ""  # why the prediction is wrong when it could not be run or ran past a limit
    gold_error: str = ""  # why the row cannot be judged (its context or gold answer): not counted


class QueryError(Exception):
    """A statement that failed or ran past a limit; the message says which."""


class GoldError(Exception):
    """A row whose context or gold answer cannot be judged; the message names the field."""


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
    Raises ValueError for anything but a single SELECT query of at most QUERY_CHARS characters.
    """
    if len(sql) > QUERY_CHARS:
        raise ValueError(f"longer than {QUERY_CHARS:,} characters")
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
    """Exact match and execution match of `prediction` against the row's gold answer; never
    raises for a row (a row that cannot be judged has a `gold_error`)."""
    try:
        schema, gold, gold_sql = _parse_row(row)
    except GoldError as e:
        return Score(False, False, gold_error=str(e))
    if not prediction or not prediction.strip():
        return Score(False, False, "empty prediction")
    try:
        predicted = parse_query(prediction, schema)
        predicted_sql = normalize(predicted)
    except Exception as e:  # the parser meets any text a model writes: whatever fails, fails
        return Score(False, False, f"unparsable: {_first_line(e)}")
    if predicted_sql == gold_sql:
        return Score(True, True)
    try:
        execution = _same_results(row["context"], schema, gold, gold_sql, predicted, seed)
    except GoldError as e:
        return Score(False, False, gold_error=str(e))
    except QueryError as e:
        return Score(False, False, str(e))
    return Score(False, execution)


def check_row(row: dict[str, str], seed: int = 0) -> str:
    """Why the evaluator cannot judge `row`, or "" when it can: its context and gold answer parse
    and run within the limits on a database filled as for scoring."""
    try:
        schema, gold, gold_sql = _parse_row(row)
        with _Database() as db:
            literals = _literals_by_column([gold])
            _gold_results(db, row["context"], schema, literals, random.Random(seed), gold_sql)
    except GoldError as e:
        return str(e)
    return ""


def evaluate(rows: list[dict[str, str]], predictions: list[str], seed: int = 0) -> dict[str, Any]:
    """Scores of `predictions` against `rows` (same order), and the per-row details. Rows that
    cannot be judged are counted in `gold_errors` and left out of both accuracies."""
    if len(rows) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(rows)} rows")
    scores = [score(r, p, seed + i) for i, (r, p) in enumerate(zip(rows, predictions, strict=True))]
    judged = [s for s in scores if not s.gold_error]
    return {
        "n": len(scores),
        "exact_match": sum(s.exact for s in judged) / len(judged) if judged else 0.0,
        "execution_accuracy": sum(s.execution for s in judged) / len(judged) if judged else 0.0,
        "prediction_errors": sum(bool(s.error) for s in judged),
        "gold_errors": len(scores) - len(judged),
        "scores": [asdict(s) for s in scores],
    }


def _parse_row(row: dict[str, str]) -> tuple[Schema, exp.Expression, str]:
    """The row's schema, gold query and its normalised SQL (GoldError naming the field)."""
    for field in ("context", "answer"):
        if not isinstance(row.get(field), str):
            raise GoldError(f"field '{field}' is missing or not a string")
    try:
        schema = Schema.from_context(row["context"])
    except Exception as e:  # sqlglot raises more than ParseError on odd text (RecursionError, ...)
        raise GoldError(f"field 'context' does not parse ({_first_line(e)})") from None
    try:
        gold = parse_query(row["answer"], schema)
        return schema, gold, normalize(gold)
    except Exception as e:
        raise GoldError(f"field 'answer' does not parse ({_first_line(e)})") from None


def _same_results(
    context: str,
    schema: Schema,
    gold: exp.Expression,
    gold_sql: str,
    predicted: exp.Expression,
    seed: int,
) -> bool:
    literals = _literals_by_column([gold, predicted])
    ordered = gold.args.get("order") is not None
    predicted_sql = normalize(predicted)
    for trial in range(DATABASES):
        with _Database() as db:
            rng = random.Random(seed * DATABASES + trial)
            expected = _gold_results(db, context, schema, literals, rng, gold_sql)
            got = db.query(predicted_sql)  # a QueryError here is the prediction's
        if not _equal(expected, got, ordered):
            return False
    return True


def _gold_results(
    db: _Database,
    context: str,
    schema: Schema,
    literals: dict[str, set[Any]],
    rng: random.Random,
    gold_sql: str,
) -> list[tuple]:
    """Build and fill the tables, run the gold answer: its rows (GoldError if any of it fails)."""
    try:
        db.script(context)
        _fill(db, schema, literals, rng)
    except QueryError as e:
        raise GoldError(f"field 'context' {e}") from None
    try:
        return db.query(gold_sql)
    except QueryError as e:
        raise GoldError(f"field 'answer' {e}") from None


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
        return [literal.this] if len(literal.this) <= FILL_LITERAL_CHARS else []
    try:
        value = float(literal.this)
    except ValueError:  # a number sqlglot reads and Python does not
        return []
    if value.is_integer() and abs(value) < 2**62:  # larger ones stay REAL, as SQLite holds them
        value = int(value)
    return [value - 1, value, value + 1]


def _fill(db: _Database, schema: Schema, literals: dict[str, set[Any]], rng) -> None:
    inserts = []
    for table, columns in schema.tables.items():
        marks = ", ".join("?" * len(columns))
        for _ in range(ROWS_PER_TABLE):
            values = [_value(col, kind, literals.get(col), rng) for col, kind in columns.items()]
            inserts.append((f'INSERT OR IGNORE INTO "{table}" VALUES ({marks})', values))
    db.insert(inserts)  # OR IGNORE: a row a constraint refuses is left out


def _value(column: str, kind: str, seen: set[Any] | None, rng: random.Random) -> Any:
    if seen and rng.random() < 0.6:
        return rng.choice(sorted(seen, key=str))
    if "INT" in kind or "REAL" in kind or "NUM" in kind:
        return rng.randint(1, 5)  # few distinct values: joins match, groups form
    return rng.choice(["alpha", "beta", "gamma", "delta", f"{column} {rng.randint(1, 3)}"])


class _Database:
    """An in-memory SQLite database whose every statement runs under the limits (a QueryError
    names the one it ran past); no files, no ATTACH, no PRAGMA."""

    def __enter__(self) -> _Database:
        self.db = sqlite3.connect(":memory:")
        self.db.execute(f"PRAGMA hard_heap_limit = {SQLITE_HEAP_BYTES}")  # lowers it, never raises
        self.db.execute("PRAGMA temp_store = MEMORY")  # sorts and temporary tables: under the limit
        self.db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, VALUE_BYTES)
        self.db.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, SQL_BYTES)
        self.db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)  # VACUUM INTO attaches its file too
        self.db.set_authorizer(_authorize)
        self.db.set_progress_handler(self._on_progress, PROGRESS_EVERY)
        self._budget(time.monotonic() + QUERY_SECONDS)
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    def script(self, sql: str) -> None:
        with self._limited():
            self.db.executescript(sql)

    def insert(self, statements: list[tuple[str, list[Any]]]) -> None:
        with self._limited():
            for sql, values in statements:
                self.db.execute(sql, values)

    def query(self, sql: str) -> list[tuple]:
        with self._limited():
            rows, size = [], 0
            for row in self.db.execute(sql):
                rows.append(row)
                size += sum(len(v) for v in row if isinstance(v, str | bytes))
                if len(rows) > RESULT_ROWS:
                    raise QueryError(f"returned more than {RESULT_ROWS:,} rows")
                if size > RESULT_BYTES:
                    raise QueryError(f"returned more than {RESULT_BYTES >> 20} MiB")
            return rows

    @contextmanager
    def _limited(self) -> Iterator[None]:
        """A fresh budget for one statement; SQLite's errors as QueryErrors."""
        self._budget(time.monotonic() + QUERY_SECONDS)
        try:
            yield
        except sqlite3.Error as e:
            if self.exceeded:
                raise QueryError(f"stopped at {self.exceeded}") from None
            if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_TOOBIG:
                raise QueryError(
                    f"made a string or blob longer than {VALUE_BYTES:,} bytes"
                ) from None
            raise QueryError(f"failed on SQLite: {e}") from None
        except (ValueError, OverflowError) as e:  # refused by Python's sqlite3 (a NUL in the SQL)
            raise QueryError(f"cannot run on SQLite: {e}") from None
        except MemoryError:  # SQLite out of its heap limit
            raise QueryError(f"ran past the {SQLITE_HEAP_BYTES >> 20} MiB memory limit") from None

    def _budget(self, deadline: float) -> None:
        self.steps, self.deadline, self.exceeded = 0, deadline, ""

    def _on_progress(self) -> int:
        self.steps += PROGRESS_EVERY
        if self.steps > QUERY_STEPS:
            self.exceeded = f"the {QUERY_STEPS:,}-step limit"
        elif time.monotonic() > self.deadline:
            self.exceeded = f"the {QUERY_SECONDS:g} s time limit"
        return 1 if self.exceeded else 0  # non-zero interrupts the statement


_DENIED_ACTIONS = {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH, sqlite3.SQLITE_PRAGMA}
# printf('%.*c', 2147483647, 'x') runs for 13 s in one call (SQLite 3.40), out of the limits' reach
_DENIED_FUNCTIONS = {"printf", "format"}


def _authorize(action: int, arg1: str | None, arg2: str | None, *where: str | None) -> int:
    if action in _DENIED_ACTIONS or (
        action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS
    ):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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
    for number, raw in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: line {number} is not UTF-8 text ({e.reason})") from None
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
