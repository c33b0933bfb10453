"""How a row's tables are filled so that a wrong query returns something else (`FillPlan`):
rows planted to meet or miss each query's conditions, the other cells drawn from small pools
per column, with the queries' literals, their neighbours and NULLs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from tunekit.sql_schema import Schema

ROWS_PER_TABLE = 12  # drawn rows per table, besides the planted ones
POOL = 5  # distinct drawn values of a column (repeats: groups form)
NULL_SHARE = 0.15  # drawn cells that are NULL (not keys, GROUP BY or ORDER BY columns)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like)
FILL_LITERAL_CHARS = 1000  # longer string literals are not planted in the tables


@dataclass(frozen=True)
class _Comparison:
    """`column op literal` of a query's WHERE, the column resolved to its table."""

    table: str
    column: str
    op: type[exp.Binary]
    value: Any


class FillPlan:
    """How to fill the tables for a set of queries (the gold first): the comparisons of each
    query's WHERE, the literals by column, the key columns (never NULL, few values) and the
    columns a join makes equal."""

    def __init__(self, queries: list[exp.Expression], schema: Schema):
        self.schema = schema
        self.literals = _literals_by_column(queries)
        # each query's WHERE as an OR of ANDs of comparisons (None: another WHERE)
        self.queries = [_disjuncts(q, schema) for q in queries]
        self.keys = _key_columns(queries, schema)  # joins, GROUP BY, ORDER BY, ids
        self.joined = _joined_columns(queries, schema)  # (table, column) -> its class
        self.grouped = _grouped_column(queries[0], schema)  # the gold's GROUP BY column
        self.group_rows = max(GROUP_ROWS, _having_count(queries[0]) + 2)
        self.ranked = [c for c in _order_extremes(queries[0], schema) if c[0] not in self.joined]

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
        for number, disjuncts in enumerate(self.queries):
            for comparisons in disjuncts or []:
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
                    rows += self._first_ranked(comparisons, pools, rng)
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
        for _ in range(self.group_rows):
            planted = self._planted(self.queries[0][0], pools, rng, nulls=True)
            values = next((v for t, v in planted if t == table), None)
            if values is None:
                values = {c: None for c in self.schema.tables[table]}
                planted.append((table, values))
            values[column] = NEW_GROUP
            rows += planted
        return rows

    def _first_ranked(
        self, comparisons: list[_Comparison], pools: dict, rng: random.Random
    ) -> list[tuple[str, dict[str, Any]]]:
        """For a gold answer that orders: a row meeting its conditions that its ORDER BY puts
        first among them (the highest value under DESC, the lowest under ASC), and rows that
        miss one condition each, put before it: ORDER BY ... LIMIT answers the planted row,
        which a narrowed condition leaves out and a widened one puts behind a missing row."""
        if not self.ranked:
            return []
        planted = [(self._planted(comparisons, pools, rng), 1)]
        planted += [(self._planted(comparisons, pools, rng, miss=m), 2)
                    for m in range(len(comparisons))]  # fmt: skip
        for rows, beyond in planted:
            for table, values in rows:
                for (ranked_table, column), extreme in self.ranked:
                    compared = any(c.table == table and c.column == column for c in comparisons)
                    if ranked_table == table and not compared:  # a condition's value stays
                        kind = self.schema.tables[table][column]
                        values[column] = _fresh(kind, rng, extreme * beyond)
        return [row for rows, _ in planted for row in rows]

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


def _disjuncts(query: exp.Expression, schema: Schema) -> list[list[_Comparison]] | None:
    """`query`'s WHERE as alternatives (OR) of `column op literal` comparisons joined by AND:
    rows are planted for each; [[]] without a WHERE, None for any other (nothing planted)."""
    where = query.args.get("where")
    if where is None:
        return [[]]
    condition = where.this
    while isinstance(condition, exp.Paren):
        condition = condition.this
    parts: list[Any] = list(condition.flatten()) if isinstance(condition, exp.Or) else [condition]
    found = []
    for part in parts:
        comparisons = _comparisons(part, query, schema)
        if comparisons is None:
            return None
        found.append(comparisons)
    return found


def _comparisons(
    condition: exp.Expression, query: exp.Expression, schema: Schema
) -> list[_Comparison] | None:
    """The `column op literal` comparisons of `condition` (of `query`) when AND alone joins
    them (None otherwise)."""
    aliases = _aliases(query)
    while isinstance(condition, exp.Paren):
        condition = condition.this
    nodes = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
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


def _having_count(query: exp.Expression) -> int:
    """The largest whole number a HAVING of `query` compares with (0 without one): a group
    planted for it must be larger."""
    having = query.args.get("having")
    numbers = [n for n in (having.find_all(exp.Literal) if having is not None else [])
               if not n.is_string and n.this.isdigit()]  # fmt: skip
    return min(max((int(n.this) for n in numbers), default=0), 1000)


def _order_extremes(query: exp.Expression, schema: Schema) -> list[tuple[tuple[str, str], int]]:
    """((table, column), HIGH or LOW) of each plain column `query` orders by: HIGH under
    DESC, LOW under ASC (the row that comes first)."""
    order = query.args.get("order")
    aliases, found = _aliases(query), []
    for ordered in order.expressions if order is not None else []:
        column = ordered.this
        if isinstance(column, exp.Column) and (table := _table_of(column, aliases, schema)):
            found.append(((table, column.name.lower()), HIGH if ordered.args.get("desc") else LOW))
    return found


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
    tables hold them); with `extreme`, one above (HIGH) or below (LOW) any other, and with
    twice that, one beyond those."""
    numeric = "INT" in kind or "REAL" in kind or "NUM" in kind
    if extreme:  # HIGH or LOW; twice as far (2 * HIGH, 2 * LOW) comes before those
        if numeric:
            return extreme * 10**9
        text = "~~~~" if extreme > 0 else " "  # after and before letters and digits
        return text + "~" if extreme > HIGH else "" if extreme < LOW else text
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
