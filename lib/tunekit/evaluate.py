"""Text-to-SQL evaluation: exact match of normalised SQL, and execution accuracy on SQLite.

Usage:
    python -m tunekit.evaluate --data rows.json --predictions predictions.jsonl

ROWS is any dataset file tunekit reads (.json array, .jsonl, .parquet of {question, context,
answer}); PREDICTIONS is JSONL with a `prediction` field per row, in the same order. Prints one
JSON object: n, exact_match, execution_accuracy, and the counts behind them (with --details,
every row's score and the reason it is wrong or cannot be judged).

Execution accuracy builds the tables of each row's CREATE TABLE context in an in-memory SQLite
database, fills them so that a wrong query returns something else, runs both queries on a few
such databases and compares the results: as lists when the gold query orders, as multisets
otherwise. The filling plants, for the gold and the predicted query each, rows that meet all
of its conditions (never as many for one as for the other) and rows that miss one condition
only; the other cells come from a small pool per column (so groups form), numbers from a wide
range (so MIN/MAX see the rows a condition drops), with the literals of both queries and their
neighbours (so > and >= differ), and NULLs (so COUNT(*) and COUNT(col) differ). A gold answer
that returns no row on any database is reported (`gold_empty`): any empty answer would match.
An empty, unparsable or failing prediction is wrong, never an error; a prediction identical to
the gold answer (once normalised) is right without being run.

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
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from tunekit.sql_schema import Schema
from tunekit.sqlite_sandbox import QUERY_CHARS, Database, QueryError
from tunekit.table_filling import FillPlan

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # predictions are often not SQL at all

DATABASES = 3  # differently filled databases a prediction must agree with the gold on


@dataclass
class Score:
    exact: bool
    execution: bool
    error: str = ""  # why the prediction is wrong when it could not be run or ran past a limit
    gold_error: str = ""  # why the row cannot be judged (its context or gold answer): not counted
    gold_empty: bool = False  # the gold answer returned no row on any database


class GoldError(Exception):
    """A row whose context or gold answer cannot be judged; the message names the field."""


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
    predicted: exp.Expression | None = None
    error, exact = "", False
    if not prediction or not prediction.strip():
        error = "empty prediction"
    else:
        try:
            predicted = parse_query(prediction, schema)
            exact = normalize(predicted) == gold_sql
        except Exception as e:  # the parser meets any text a model writes: whatever fails, fails
            predicted, error = None, f"unparsable: {_first_line(e)}"
    try:  # the gold answer runs in any case: is it empty everywhere?
        execution, error, empty = _same_results(
            row["context"], schema, gold, predicted, seed, error
        )
    except GoldError as e:
        return Score(False, False, gold_error=str(e))
    if exact:
        return Score(True, True, gold_empty=empty)
    return Score(False, execution, error, gold_empty=empty)


def check_row(row: dict[str, str], seed: int = 0) -> str:
    """Why the evaluator cannot judge `row`, or "" when it can: its context and gold answer parse
    and run within the limits on a database filled as for scoring."""
    try:
        schema, gold, gold_sql = _parse_row(row)
        with Database() as db:
            _gold_results(
                db, row["context"], FillPlan([gold], schema), random.Random(seed), 0, gold_sql
            )
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
        "gold_empty": sum(s.gold_empty for s in judged),  # rows any empty answer would match
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
    predicted: exp.Expression | None,
    seed: int,
    error: str,
) -> tuple[bool, str, bool]:
    """Whether `predicted` returns what `gold` does on every database (False for None), the
    prediction's error, and whether the gold answer was empty on every database."""
    plan = FillPlan([gold] if predicted is None else [gold, predicted], schema)
    ordered = gold.args.get("order") is not None
    gold_sql = normalize(gold)
    predicted_sql = normalize(predicted) if predicted is not None else ""
    same, empty = predicted is not None, True
    for trial in range(DATABASES):
        with Database() as db:
            rng = random.Random(seed * DATABASES + trial)
            expected = _gold_results(db, context, plan, rng, trial, gold_sql)
            empty = empty and not expected
            if same:
                try:
                    got = db.query(predicted_sql)  # a QueryError here is the prediction's
                except QueryError as e:
                    same, error = False, str(e)
                    continue
                same = _equal(expected, got, ordered)
    return same, error, empty


def _gold_results(
    db: Database, context: str, plan: FillPlan, rng: random.Random, trial: int, gold_sql: str
) -> list[tuple]:
    """Build and fill the tables, run the gold answer: its rows (GoldError if any of it fails)."""
    try:
        db.script(context)
        db.insert(plan.fill(rng, trial))
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
