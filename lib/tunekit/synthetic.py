"""A seeded generator of text-to-SQL rows shaped like b-mc2/sql-create-context.

Each row is `{question, context, answer}`: a question in English, the CREATE TABLE statements it is
about, and a SQLite query that answers it. The mix follows the public dataset: COUNT/MIN/MAX/AVG/
SUM, SELECT of a column, WHERE with one or more conditions joined by AND, comparisons, double-quoted
lowercase string literals, ORDER BY/LIMIT and a few two-table JOINs.

Every row has a schema of its own: its table, columns and values are drawn from a large
vocabulary (`tunekit.vocabulary`: `table_name_N` as in the public data, snake_case and multi-word
names, made-up words), and a third of the contexts list columns the query does not use. So the
SQL can only be written by reading the question and the context: a model that learns these rows
learns to copy names and literals, which is what the public dataset asks of it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot.tokens import Tokenizer

from tunekit import vocabulary as vocab

# Names a column may not take: SQL's keywords ("order" of "orders", "grant" of "grants")
SQL_WORDS = frozenset(word.lower() for word in Tokenizer.KEYWORDS)
DISTRACTOR_SHARE = 0.35  # contexts that list columns the query does not use
QUOTED_SHARE = 0.3  # questions that put a string literal in double quotes
MADE_UP_SHARE = 0.3  # names that are made-up words (random letters)
WORD_SHARE = 0.4  # names that are English words (not the unseen set's)


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool
    values: tuple[str, ...] | tuple[int, int]  # strings to pick from, or an integer range

    @property
    def phrase(self) -> str:
        """How a question names it: its words."""
        return self.name.replace("_", " ")

    @property
    def sql_type(self) -> str:
        return "INTEGER" if self.numeric else "VARCHAR"

    def value(self, rng: random.Random) -> str:
        if self.numeric:
            low, high = self.values
            return str(rng.randint(int(low), int(high)))
        return rng.choice(self.values)  # type: ignore[return-value]


@dataclass(frozen=True)
class Schema:
    """What a row is about: a table, what its rows are called, the columns it may use."""

    table: str
    entity: str  # plural noun for COUNT(*) questions
    columns: tuple[Column, ...]


def random_values(rng: random.Random) -> tuple[str, ...]:
    """The values of one VARCHAR column: people, places, things, English or made-up words,
    or codes."""
    kind = rng.random()
    if kind < 0.1:  # "k-20", "v3.1", "q-7.12": values with dashes, dots and digits
        return tuple(_code(rng) for _ in range(8))
    if kind < 0.25:
        return tuple(
            f"{rng.choice(vocab.FIRST_NAMES)} {rng.choice(vocab.LAST_NAMES)}" for _ in range(8)
        )
    if kind < 0.32:
        return tuple(p.replace("_", " ") for p in rng.sample(vocab.PLACES, 8))
    if kind < 0.45:
        return tuple(" ".join(rng.sample(vocab.THINGS, rng.choice((1, 1, 2)))) for _ in range(8))
    if kind < 0.75:
        return tuple(" ".join(rng.sample(vocab.WORDS, rng.choice((1, 1, 2)))) for _ in range(8))
    return tuple(" ".join(rng.sample(vocab.MADE_UP, rng.choice((1, 1, 1, 2)))) for _ in range(8))


def _code(rng: random.Random) -> str:
    letters = rng.choice(vocab.LETTERS)
    number = str(rng.randint(0, 99))
    if rng.random() < 0.5:
        number += f".{rng.randint(0, 20)}"
    return f"{letters}{rng.choice(('-', '', '-'))}{number}"


def random_range(rng: random.Random) -> tuple[int, int]:
    low = rng.choice((0, 1, 1, 5, 10, 50, 100, 1000, 1900, 1980, 10000))
    return low, low + rng.choice((9, 20, 40, 99, 500, 5000, 90000))


_COLUMNS = vocab.column_names()
_TEXT_COLUMNS = tuple(name for name, numeric in _COLUMNS if not numeric)
_NUMERIC_COLUMNS = tuple(name for name, numeric in _COLUMNS if numeric)
_SECOND_WORDS = (*vocab.WORDS, *vocab.MADE_UP[:2000])  # a snake_case name's second word
_JOIN_TARGETS = (*_TEXT_COLUMNS, *_NUMERIC_COLUMNS)[::7]  # what a join's question asks for


def random_name(rng: random.Random) -> str:
    """A made-up word, an English word, or two of them in snake_case."""
    roll = rng.random()
    if roll < MADE_UP_SHARE:
        return rng.choice(vocab.MADE_UP)
    if roll < MADE_UP_SHARE + WORD_SHARE * 0.6:
        return rng.choice(vocab.WORDS)
    return f"{rng.choice(vocab.WORDS)}_{rng.choice(_SECOND_WORDS)}"


def random_schema(rng: random.Random, width: int = 7) -> Schema:
    """A table with `width` columns: made-up words, English words, or a column of the
    vocabulary's nouns and modifiers ("home_team")."""
    names: dict[str, bool] = {}
    while len(names) < width:
        if rng.random() < MADE_UP_SHARE + WORD_SHARE:
            name, numeric = random_name(rng), rng.random() < 0.45
        else:
            name, numeric = rng.choice(_COLUMNS)
        if name not in SQL_WORDS:
            names.setdefault(name, numeric)
    columns = tuple(
        Column(n, numeric, random_range(rng) if numeric else random_values(rng))
        for n, numeric in names.items()
    )
    roll = rng.random()
    if roll < 0.5:
        return Schema(f"table_name_{rng.randint(1, 99)}", "entries", columns)
    word = rng.choice(vocab.TABLES) if roll < 0.65 else random_name(rng)
    while word in SQL_WORDS:  # a table called "like" does not parse
        word = random_name(rng)
    if word.endswith("s") and word[:-1] not in SQL_WORDS and rng.random() < 0.4:
        # a column named like its table: pets.pet
        columns = (Column(word[:-1], False, random_values(rng)), *columns[1:])
    return Schema(word, word.replace("_", " "), columns)


AGGREGATES = {
    "MIN": ["lowest", "smallest", "minimum"],
    "MAX": ["highest", "largest", "maximum"],
    "AVG": ["average", "mean"],
    "SUM": ["total", "sum of the"],
}
COMPARISONS = {
    ">": ["greater than", "larger than", "more than", "over", "above"],
    "<": ["less than", "smaller than", "fewer than", "under", "below"],
}
PREPOSITIONS = ("at", "in", "for", "with")


@dataclass(frozen=True)
class Condition:
    sql: str
    when: str  # "week is 5", read after "when"
    has: str  # "a week of 5", read after "has"
    said: str  # "week over 5", "kubecon "eu"": read after "with" or "at"


class Row:
    """One row under construction: a schema (random unless given), and the columns its query
    uses, in order."""

    def __init__(self, rng: random.Random, schema: Schema | None = None):
        self.rng = rng
        self.schema = schema or random_schema(rng)
        self.table = self.schema.table
        self.used: list[Column] = []

    def pick(self, numeric: bool | None = None) -> Column:
        pool = [
            c
            for c in self.schema.columns
            if c not in self.used and (numeric is None or c.numeric == numeric)
        ]
        if not pool:  # a schema with too few of the kind asked for: add one
            name = self.rng.choice(vocab.MADE_UP) + "_" + self.rng.choice(vocab.NUMERIC_NOUNS)
            pool = [Column(name, True, random_range(self.rng))]
        column = self.rng.choice(pool)
        self.used.append(column)
        return column

    def context(self) -> str:
        """CREATE TABLE of the columns the query uses, in query order (as the public dataset),
        with unused columns of the schema among them in some rows."""
        listed = list(self.used)
        if self.rng.random() < DISTRACTOR_SHARE:
            spare = [c for c in self.schema.columns if c not in self.used]
            for column in self.rng.sample(spare, min(len(spare), self.rng.randint(1, 3))):
                listed.insert(self.rng.randint(0, len(listed)), column)
        body = ", ".join(f"{c.name} {c.sql_type}" for c in listed)
        return f"CREATE TABLE {self.table} ({body})"

    def literal(self, value: str) -> str:
        """A string value as a question says it: bare, or in double quotes."""
        return f'"{value}"' if self.rng.random() < QUOTED_SHARE else value

    def equals(self, column: Column) -> Condition:
        value = column.value(self.rng)
        if column.numeric:
            return Condition(
                f"{column.name} = {value}",
                f"{column.phrase} is {value}",
                f"a {column.phrase} of {value}",
                f"{column.phrase} {value}",
            )
        said = self.literal(value)
        return Condition(
            f'{column.name} = "{value}"',
            f"{column.phrase} is {said}",
            f"a {column.phrase} of {said}",
            f"{column.phrase} {said}",
        )

    def compares(self, column: Column) -> Condition:
        op = self.rng.choice(list(COMPARISONS))
        value, words = column.value(self.rng), self.rng.choice(COMPARISONS[op])
        said = f"{column.phrase} {words} {value}"
        return Condition(f"{column.name} {op} {value}", said, f"a {said}", said)

    def condition(self) -> Condition:
        column = self.pick()
        if column.numeric and self.rng.random() < 0.5:
            return self.compares(column)
        return self.equals(column)


def _select(row: Row) -> tuple[str, str]:
    target, cond = row.pick(), row.condition()
    question = row.rng.choice(
        [
            f"What is the {target.phrase} when the {cond.when}?",
            f"Which {target.phrase} has {cond.has}?",
            f"Name the {target.phrase} when {cond.when}.",
            f"What {target.phrase} has {cond.has}?",
        ]
    )
    return question, f"SELECT {target.name} FROM {row.table} WHERE {cond.sql}"


def _select_and(row: Row) -> tuple[str, str]:
    target = row.pick()
    conds = [row.condition() for _ in range(3 if row.rng.random() < 0.15 else 2)]
    where = " AND ".join(c.sql for c in conds)
    question = row.rng.choice(
        [
            f"What is the {target.phrase} when {' and '.join(c.when for c in conds)}?",
            f"Which {target.phrase} has {' and '.join(c.has for c in conds)}?",
        ]
    )
    return question, f"SELECT {target.name} FROM {row.table} WHERE {where}"


def _count(row: Row) -> tuple[str, str]:
    roll = row.rng.random()
    if roll < 0.4:
        target, cond = row.pick(), row.condition()
        question = row.rng.choice(
            [
                f"How many {target.phrase} entries have {cond.has}?",
                f"What is the total number of {target.phrase} when {cond.when}?",
                f"How many {target.phrase} are there when {cond.when}?",
            ]
        )
        return question, f"SELECT COUNT({target.name}) FROM {row.table} WHERE {cond.sql}"
    entity = row.schema.entity
    if roll < 0.7:
        cond = row.compares(row.pick(numeric=True))
        question = row.rng.choice(
            [f"How many {entity} have {cond.has}?", f"How many {entity} have {cond.said}?"]
        )
        return question, f"SELECT COUNT(*) FROM {row.table} WHERE {cond.sql}"
    # the tutorial's shape: "the total number of attendees with age over 30 at kubecon "eu""
    first, second = row.compares(row.pick(numeric=True)), row.equals(row.pick(numeric=False))
    preposition = row.rng.choice(PREPOSITIONS)
    question = row.rng.choice(
        [
            f"What is the total number of {entity} with {first.said} {preposition} {second.said}?",
            f"How many {entity} with {first.said} are there {preposition} {second.said}?",
        ]
    )
    return question, f"SELECT COUNT(*) FROM {row.table} WHERE {first.sql} AND {second.sql}"


def _aggregate(row: Row) -> tuple[str, str]:
    func = row.rng.choice(list(AGGREGATES))
    target, cond = row.pick(numeric=True), row.condition()
    word = row.rng.choice(AGGREGATES[func])
    return (
        f"What is the {word} {target.phrase} when {cond.when}?",
        f"SELECT {func}({target.name}) FROM {row.table} WHERE {cond.sql}",
    )


def _order(row: Row) -> tuple[str, str]:
    target, key = row.pick(numeric=False), row.pick(numeric=True)
    descending = row.rng.random() < 0.5
    word = "highest" if descending else "lowest"
    order = f"ORDER BY {key.name}{' DESC' if descending else ''}"
    if row.rng.random() < 0.5:
        return (
            f"Which {target.phrase} has the {word} {key.phrase}?",
            f"SELECT {target.name} FROM {row.table} {order} LIMIT 1",
        )
    k = row.rng.randint(2, 5)
    return (
        f"List the {k} {target.phrase} values with the {word} {key.phrase}.",
        f"SELECT {target.name} FROM {row.table} {order} LIMIT {k}",
    )


def _join(rng: random.Random) -> tuple[str, str, str]:
    """Two tables of their own joined on a key, `<one>_id`, that both list."""
    one, many = rng.sample(vocab.TABLES, 2)
    key, owner, things = f"{one}_id", one.replace("_", " "), many.replace("_", " ")
    label = Column(rng.choice(_TEXT_COLUMNS), False, random_values(rng))
    amount = Column(rng.choice(_NUMERIC_COLUMNS), True, random_range(rng))
    target = rng.choice([c for c in _JOIN_TARGETS if c not in (label.name, amount.name)])
    target_type = "INTEGER" if target in _NUMERIC_COLUMNS else "VARCHAR"
    context = (
        f"CREATE TABLE {one} ({key} INTEGER, {label.name} VARCHAR, {amount.name} INTEGER); "
        f"CREATE TABLE {many} ({many}_id INTEGER, {target} {target_type}, {key} INTEGER)"
    )
    base = f"FROM {many} AS T1 JOIN {one} AS T2 ON T1.{key} = T2.{key} WHERE "
    if rng.random() < 0.5:
        value = label.value(rng)
        return (
            f"What are the {target.replace('_', ' ')} values of {things} whose {owner} "
            f"{label.phrase} is {value}?",
            context,
            f'SELECT T1.{target} {base}T2.{label.name} = "{value}"',
        )
    op = rng.choice(list(COMPARISONS))
    value = amount.value(rng)
    return (
        f"How many {things} belong to {owner} with a {amount.phrase} {COMPARISONS[op][0]} {value}?",
        context,
        f"SELECT COUNT(*) {base}T2.{amount.name} {op} {value}",
    )


# The mix of a generated dataset: rows on random schemas of the vocabulary (the public data's
# question shapes, names to copy), everyday tables asked the way people ask, WikiSQL's conventions
MIX = {"schemas": 0.25, "everyday": 0.4, "wikisql": 0.35}

TEMPLATES: list[tuple[float, Callable[[Row], tuple[str, str]]]] = [
    (0.22, _select),
    (0.23, _select_and),
    (0.2, _count),
    (0.2, _aggregate),
    (0.09, _order),
]
JOIN_SHARE = 0.06


def generate(n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` rows, the same for the same seed."""
    from tunekit import synthetic_everyday, synthetic_wikisql

    rng = random.Random(seed)
    weights = [w for w, _ in TEMPLATES]
    kinds, shares = list(MIX), list(MIX.values())
    rows = []
    for _ in range(n):
        [kind] = rng.choices(kinds, weights=shares)
        if kind == "everyday":
            rows.append(synthetic_everyday.generate_row(rng))
            continue
        if kind == "wikisql":
            rows.append(synthetic_wikisql.generate_row(rng))
            continue
        if rng.random() < JOIN_SHARE:
            question, context, answer = _join(rng)
        else:
            row = Row(rng)
            [template] = rng.choices([t for _, t in TEMPLATES], weights=weights)
            question, answer = template(row)
            context = row.context()
        rows.append({"question": question, "context": context, "answer": answer})
    return rows
