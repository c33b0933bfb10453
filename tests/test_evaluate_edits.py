"""The evaluator is hard to fool: a gold answer edited the ways a model gets a query wrong is
judged wrong, on every row of the shipped evaluation sets and of the generator where the edit
applies. Before the tables were filled for it, some of these edits scored right: an empty gold
result took any empty answer, MIN/MAX took a dropped WHERE (integer cells held 1-5 only), and
COUNT(*) equalled COUNT(col) (no NULLs)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlglot
from sqlglot import exp

from tunekit import eval_sets
from tunekit.evaluate import Schema, evaluate, parse_query, score
from tunekit.synthetic import generate

Edit = Callable[[exp.Expression, Schema], exp.Expression | None]


def gold_rows() -> list[dict[str, str]]:
    return eval_sets.validation_rows() + eval_sets.test_rows() + generate(600, seed=11)


def _edited(row: dict[str, str], edit: Edit) -> str | None:
    schema = Schema.from_context(row["context"])
    query = parse_query(row["answer"], schema)
    changed = edit(query.copy(), schema)
    return None if changed is None else changed.sql("sqlite")


def drop_where_of_min_max(query: exp.Expression, schema: Schema) -> exp.Expression | None:
    if not query.find(exp.Min, exp.Max) or query.args.get("where") is None:
        return None
    query.set("where", None)
    return query


def equals_to_not_equals(query: exp.Expression, schema: Schema) -> exp.Expression | None:
    node = query.find(exp.EQ)
    if node is None or query.args.get("where") is None or not node.find(exp.Literal):
        return None
    node.replace(exp.NEQ(this=node.this, expression=node.expression))
    return query


def changed_literal(query: exp.Expression, schema: Schema) -> exp.Expression | None:
    where = query.args.get("where")
    literal = where.find(exp.Literal) if where is not None else None
    if literal is None:
        return None
    if literal.is_string:
        literal.replace(exp.Literal.string(literal.this + "x"))
    else:
        literal.replace(exp.Literal.number(str(float(literal.this) + 1).removesuffix(".0")))
    return query


def count_star_to_count_column(query: exp.Expression, schema: Schema) -> exp.Expression | None:
    """COUNT(*) -> COUNT(col) of a column the query does not compare (it may be NULL), and
    COUNT(col) -> COUNT(*)."""
    count = query.find(exp.Count)
    if count is None or query.args.get("joins") or isinstance(count.this, exp.Distinct):
        return None
    if isinstance(count.this, exp.Star):
        table = query.find(exp.Table).name.lower()
        compared = {c.name.lower() for c in query.find_all(exp.Column)}
        free = [c for c in schema.tables[table] if c not in compared and not c.endswith("_id")]
        if not free:
            return None
        count.set("this", exp.column(free[0]))
    elif isinstance(count.this, exp.Column) and not count.this.name.lower().endswith("_id"):
        count.set("this", exp.Star())
    else:
        return None
    return query


@pytest.mark.parametrize(
    "edit",
    [drop_where_of_min_max, equals_to_not_equals, changed_literal, count_star_to_count_column],
)
def test_each_edit_of_a_gold_answer_is_judged_wrong(edit: Edit) -> None:
    rows, edited = [], []
    for row in gold_rows():
        if (changed := _edited(row, edit)) is not None:
            rows.append(row)
            edited.append(changed)
    assert len(rows) >= 20, f"{edit.__name__} applies to too few rows to tell"
    result = evaluate(rows, edited)
    fooled = [
        (r["answer"], e) for r, e, s in zip(rows, edited, result["scores"], strict=True)
        if s["execution"]
    ]  # fmt: skip
    assert not fooled, f"{len(fooled)} of {len(rows)} edits judged right: {fooled[:5]}"


def test_the_gold_answers_themselves_are_right_and_never_empty_everywhere() -> None:
    rows = gold_rows()
    result = evaluate(rows, [r["answer"] for r in rows])
    assert result["execution_accuracy"] == 1.0 and result["gold_errors"] == 0
    empty = [r["answer"] for r, s in zip(rows, result["scores"], strict=True) if s["gold_empty"]]
    assert result["gold_empty"] == len(empty) == 0, empty


def test_a_gold_answer_empty_on_every_database_is_reported() -> None:
    row = {
        "question": "q",
        "context": "CREATE TABLE t (a INTEGER, b VARCHAR)",
        "answer": "SELECT b FROM t WHERE a > 5 AND a < 3",
    }
    found = score(row, "SELECT b FROM t WHERE a > 100 AND a < 50")
    assert found.gold_empty and found.execution  # any empty answer matches: hence the flag
    assert evaluate([row], [row["answer"]])["gold_empty"] == 1


def test_count_star_and_count_column_differ_only_over_nulls() -> None:
    row = {
        "question": "How many entries have a week over 5?",
        "context": "CREATE TABLE t (name VARCHAR, week INTEGER)",
        "answer": "SELECT COUNT(*) FROM t WHERE week > 5",
    }
    assert not score(row, "SELECT COUNT(name) FROM t WHERE week > 5").execution
    assert score(row, "SELECT COUNT(week) FROM t WHERE week > 5").execution  # never NULL there


def test_edits_parse_as_sql() -> None:
    row = {
        "context": "CREATE TABLE t (a INTEGER, b VARCHAR)",
        "answer": 'SELECT MAX(a) FROM t WHERE b = "x"',
    }
    assert _edited(row, drop_where_of_min_max) == "SELECT MAX(a) FROM t"
    assert sqlglot.parse_one(_edited(row, equals_to_not_equals) or "").find(exp.NEQ)
    assert "'xx'" in (_edited(row, changed_literal) or "")


# Found when the generator's rows changed (stop 36): each edit below was judged right, or the
# gold was empty on every database, before the tables were filled for its query's shape
@pytest.mark.parametrize(
    ("context", "gold", "wrong"),
    [
        (  # a group larger than HAVING's number: the gold is not empty, COUNT(col) differs
            "CREATE TABLE theatre (name TEXT, terrace TEXT)",
            "SELECT terrace FROM theatre GROUP BY terrace HAVING COUNT(*) > 8",
            "SELECT terrace FROM theatre GROUP BY terrace HAVING COUNT(name) > 8",
        ),
        (  # rows planted for each side of an OR, NULL where they may be
            "CREATE TABLE bank (name VARCHAR, country VARCHAR)",
            'SELECT COUNT(*) FROM bank WHERE country = "Uruguay" OR country = "Peru"',
            'SELECT COUNT(name) FROM bank WHERE country = "Uruguay" OR country = "Peru"',
        ),
        (  # the row ORDER BY puts first meets the gold's condition only
            "CREATE TABLE conference (name VARCHAR, season_year INT, visitors REAL)",
            "SELECT name FROM conference WHERE season_year > 1967 ORDER BY visitors DESC LIMIT 1",
            "SELECT name FROM conference WHERE season_year > 1968 ORDER BY visitors DESC LIMIT 1",
        ),
        (
            "CREATE TABLE conference (name VARCHAR, season_year INT, visitors REAL)",
            "SELECT name FROM conference WHERE season_year < 1967 ORDER BY visitors LIMIT 1",
            "SELECT name FROM conference WHERE season_year <= 1967 ORDER BY visitors LIMIT 1",
        ),
    ],
)
def test_an_edit_of_a_shape_the_filling_plans_for_is_judged_wrong(
    context: str, gold: str, wrong: str
) -> None:
    row = {"question": "q", "context": context, "answer": gold}
    right, edited = evaluate([row, row], [gold, wrong])["scores"]
    assert right["execution"] and not right["gold_empty"]
    assert not edited["execution"], wrong
