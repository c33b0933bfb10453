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
ROWS_PER_TABLE = 12  # drawn rows per table, besides the planted ones
POOL = 5  # distinct drawn values of a column (repeats: groups form)
NULL_SHARE = 0.15  # drawn cells that are NULL (not keys, GROUP BY or ORDER BY columns)
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
    gold_empty: bool = False  # the gold answer returned no row on any database


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
        with _Database() as db:
            _gold_results(
                db, row["context"], _Plan([gold], schema), random.Random(seed), 0, gold_sql
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
    plan = _Plan([gold] if predicted is None else [gold, predicted], schema)
    ordered = gold.args.get("order") is not None
    gold_sql = normalize(gold)
    predicted_sql = normalize(predicted) if predicted is not None else ""
    same, empty = predicted is not None, True
    for trial in range(DATABASES):
        with _Database() as db:
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
    db: _Database, context: str, plan: _Plan, rng: random.Random, trial: int, gold_sql: str
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


@dataclass(frozen=True)
class _Comparison:
    """`column op literal` of a query's WHERE, the column resolved to its table."""

    table: str
    column: str
    op: type[exp.Binary]
    value: Any


class _Plan:
    """How to fill the tables for a set of queries (the gold first): the comparisons of each
    query's WHERE, the literals by column, the key columns (never NULL, few values) and the
    columns a join makes equal."""

    def __init__(self, queries: list[exp.Expression], schema: Schema):
        self.schema = schema
        self.literals = _literals_by_column(queries)
        self.queries = [_comparisons(q, schema) for q in queries]  # None: not a plain AND
        self.keys = _key_columns(queries, schema)  # joins, GROUP BY, ORDER BY, ids
        self.joined = _joined_columns(queries, schema)  # (table, column) -> its class
        self.grouped = _grouped_column(queries[0], schema)  # the gold's GROUP BY column

    def fill(self, rng: random.Random, trial: int) -> list[tuple[str, list[Any]]]:
        """INSERT statements: drawn rows, then each query's planted rows."""
        pools = {
            (table, column): _pool(column, kind, self.literals.get(column), rng,
                                   (table, column) in self.keys)
            for table, columns in self.schema.tables.items()
            for column, kind in columns.items()
        }  # fmt: skip
        rows: list[tuple[str, dict[str, Any]]] = []
        for table, columns in self.schema.tables.items():
            for _ in range(ROWS_PER_TABLE):
                rows.append((table, self._drawn(table, columns, pools, rng)))
        planted = (1 + trial % 2, 3 + trial)  # meeting the gold's, the prediction's: never as many
        for number, comparisons in enumerate(self.queries):
            if not comparisons:
                continue
            count = planted[min(number, 1)]
            for i in range(count):  # the last one NULL wherever it may be
                rows += self._planted(comparisons, pools, rng, nulls=i == count - 1)
            for missed in range(len(comparisons)):  # all conditions but one
                rows += self._planted(comparisons, pools, rng, miss=missed)
            if number == 0:  # a MIN or MAX over rows the gold's WHERE drops sees these
                for extreme in (HIGH, LOW):
                    rows += self._planted(comparisons, pools, rng, miss=0, extreme=extreme)
        rows += self._null_group(pools, rng)
        return [_insert(table, self.schema.tables[table], values) for table, values in rows]

    def _null_group(self, pools: dict, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
        """For a gold answer that groups: a group of its own, larger than any drawn one, whose
        rows meet its conditions and are NULL elsewhere: COUNT(*) and COUNT(col) rank and
        filter it differently (HAVING, ORDER BY COUNT(...))."""
        if self.grouped is None or self.queries[0] is None:
            return []
        table, column = self.grouped
        rows = []
        for _ in range(GROUP_ROWS):
            planted = self._planted(self.queries[0], pools, rng, nulls=True)
            values = next((v for t, v in planted if t == table), None)
            if values is None:
                values = {c: None for c in self.schema.tables[table]}
                planted.append((table, values))
            values[column] = NEW_GROUP
            rows += planted
        return rows

    def _drawn(self, table: str, columns: dict[str, str], pools: dict, rng) -> dict[str, Any]:
        return {
            column: None
            if (table, column) not in self.keys and rng.random() < NULL_SHARE
            else rng.choice(pools[table, column])
            for column in columns
        }

    def _planted(
        self,
        comparisons: list[_Comparison],
        pools: dict,
        rng: random.Random,
        nulls: bool = False,
        miss: int | None = None,
        extreme: int = 0,
    ) -> list[tuple[str, dict[str, Any]]]:
        """A row of each table the comparisons name, meeting them (all but `miss`); keys from
        their pools, alike in the columns a join makes equal; the other cells fresh values
        (so the rows a condition keeps add up to something else than those it drops), NULL
        with `nulls`, the highest or lowest value of their kind with `extreme`."""
        rows = []
        shared: dict[Any, Any] = {}
        for table in sorted({c.table for c in comparisons}):
            values = {}
            for column, kind in self.schema.tables[table].items():
                pool = pools[table, column]
                if (table, column) in self.keys:
                    group = self.joined.get((table, column), (table, column))
                    values[column] = shared.setdefault(group, rng.choice(pool))
                elif nulls:
                    values[column] = None
                else:
                    values[column] = _fresh(kind, rng, extreme)
            for i, c in enumerate(comparisons):
                if c.table == table:
                    values[c.column] = _meeting(c, rng, pools[table, c.column], i != miss)
            rows.append((table, values))
        return rows


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


def _comparisons(query: exp.Expression, schema: Schema) -> list[_Comparison] | None:
    """The `column op literal` comparisons of `query`'s WHERE when AND alone joins them (None
    otherwise: nothing is planted for it)."""
    where = query.args.get("where")
    if where is None:
        return []
    aliases = _aliases(query)
    nodes = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
    found = []
    for node in nodes:
        if not isinstance(node, _COMPARISONS) or isinstance(node, exp.Like):
            return None
        column, literal = node.this, node.expression
        if isinstance(literal, exp.Column):
            column, literal = literal, column
        if not (isinstance(column, exp.Column) and isinstance(literal, exp.Literal)):
            return None
        table, near = _table_of(column, aliases, schema), _near(literal)
        if table is None or not near:
            return None
        value = near[0] if literal.is_string else near[1]
        found.append(_Comparison(table, column.name.lower(), type(node), value))
    return found


def _aliases(query: exp.Expression) -> dict[str, str]:
    """Alias (and name) -> table name, lower-cased, of the tables `query` reads."""
    names = {}
    for table in query.find_all(exp.Table):
        names[table.name.lower()] = table.name.lower()
        if table.alias:
            names[table.alias.lower()] = table.name.lower()
    return names


def _table_of(column: exp.Column, aliases: dict[str, str], schema: Schema) -> str | None:
    """The table `column` belongs to, if the schema has it there (a prediction may name any)."""
    if column.table:
        table = aliases.get(column.table.lower())
        found = schema.tables.get(table or "", {})
        return table if column.name.lower() in found else None
    for table in aliases.values():
        if column.name.lower() in schema.tables.get(table, {}):
            return table
    return None


def _key_columns(queries: list[exp.Expression], schema: Schema) -> set[tuple[str, str]]:
    """(table, column) of what a join matches on, a query groups or orders by, and id columns:
    never NULL, few values."""
    keys = set()
    for query in queries:
        aliases = _aliases(query)
        nodes: list[exp.Expression] = []
        for join in query.args.get("joins") or []:
            if join.args.get("on") is not None:
                nodes += list(join.args["on"].find_all(exp.Column))
        for clause in ("group", "order"):
            if query.args.get(clause) is not None:
                nodes += list(query.args[clause].find_all(exp.Column))
        for column in nodes:
            if isinstance(column, exp.Column) and (table := _table_of(column, aliases, schema)):
                keys.add((table, column.name.lower()))
    for table, columns in schema.tables.items():
        keys |= {(table, c) for c in columns if c == "id" or c.endswith("_id")}
    return keys


HIGH, LOW = 1, -1  # an extreme row's cells: the highest or lowest of their kind
GROUP_ROWS, NEW_GROUP = 8, "group of nulls"  # more rows than any drawn group has


def _grouped_column(query: exp.Expression, schema: Schema) -> tuple[str, str] | None:
    """(table, column) of the first column `query` groups by, if any."""
    group = query.args.get("group")
    column = group.find(exp.Column) if group is not None else None
    if column is None:
        return None
    table = _table_of(column, _aliases(query), schema)
    return (table, column.name.lower()) if table else None


def _fresh(kind: str, rng: random.Random, extreme: int = 0) -> Any:
    """A new value of a column of `kind` (numbers as text in a text column, as WikiSQL's
    tables hold them); with `extreme`, one above (HIGH) or below (LOW) any other."""
    numeric = "INT" in kind or "REAL" in kind or "NUM" in kind
    if extreme:
        if numeric:
            return extreme * 10**9
        return "~~~~" if extreme == HIGH else " "  # after and before letters and digits
    number = rng.randint(-100, 100_000)
    return number if numeric else str(number)


def _joined_columns(queries: list[exp.Expression], schema: Schema) -> dict[tuple, tuple]:
    """(table, column) -> a class shared by the columns a join's ON makes equal."""
    classes: dict[tuple, tuple] = {}
    for query in queries:
        aliases = _aliases(query)
        for join in query.args.get("joins") or []:
            on = join.args.get("on")
            for eq in on.find_all(exp.EQ) if on is not None else []:
                left, right = eq.this, eq.expression
                if not (isinstance(left, exp.Column) and isinstance(right, exp.Column)):
                    continue
                a, b = _table_of(left, aliases, schema), _table_of(right, aliases, schema)
                if a and b:
                    ends = ((a, left.name.lower()), (b, right.name.lower()))
                    group = classes.get(ends[0]) or classes.get(ends[1]) or ends[0]
                    classes[ends[0]] = classes[ends[1]] = group
    return classes


def _pool(column: str, kind: str, seen: set[Any] | None, rng: random.Random, key: bool) -> list:
    """The values a column's drawn cells take: a few from a wide range (keys: 1-4, so that
    joins match), and the literals compared with the column and their neighbours."""
    numeric = "INT" in kind or "REAL" in kind or "NUM" in kind
    if key and numeric:
        pool: list[Any] = list(range(1, 5))
    elif numeric:
        scale = rng.choice((10, 100, 10_000))
        pool = [rng.randint(-scale // 10, scale) for _ in range(POOL)]
    else:  # words, and numbers as text (WikiSQL's VARCHAR columns hold them)
        pool = [f"{column} {rng.randint(1, 99)}" for _ in range(POOL // 2)] + ["alpha"]
        pool += [str(rng.randint(-scale // 10, scale)) for scale in (100, 10_000)]
    return pool + sorted(seen or (), key=str)


def _meeting(c: _Comparison, rng: random.Random, pool: list, meet: bool) -> Any:
    """A value of `c`'s column that meets the comparison (`meet` False: that misses it)."""
    value = c.value
    if isinstance(value, str):
        other = rng.choice([v for v in pool if v != value] or [value + " other"])
        if c.op in (exp.EQ, exp.GTE, exp.LTE):
            return value if meet else other
        if c.op is exp.NEQ:
            return other if meet else value
        if c.op is exp.GT:
            return value + "z" if meet else value
        return "" if meet else value  # LT
    yes, no = {
        exp.EQ: (value, value + 1),
        exp.NEQ: (value + 1, value),
        exp.GT: (value + 1, value),
        exp.GTE: (value, value - 1),
        exp.LT: (value - 1, value),
        exp.LTE: (value, value + 1),
    }[c.op]
    return yes if meet else no


def _insert(table: str, columns: dict[str, str], values: dict[str, Any]) -> tuple[str, list]:
    marks = ", ".join("?" * len(columns))
    return f'INSERT OR IGNORE INTO "{table}" VALUES ({marks})', [values.get(c) for c in columns]


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
