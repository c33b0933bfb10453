"""A seeded generator of text-to-SQL rows shaped like b-mc2/sql-create-context.

Each row is `{question, context, answer}`: a question in English, the CREATE TABLE statements it is
about, and a SQLite query that answers it. The mix follows the public dataset: COUNT/MIN/MAX/AVG/
SUM, SELECT of a column, WHERE with one or more conditions joined by AND, comparisons, double-quoted
lowercase string literals, ORDER BY/LIMIT and a few two-table JOINs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

TEAMS = [
    "boston celtics",
    "chicago bulls",
    "new york knicks",
    "miami heat",
    "utah jazz",
    "denver nuggets",
    "orlando magic",
    "phoenix suns",
    "detroit pistons",
    "atlanta hawks",
]
PEOPLE = [
    "john smith",
    "maria garcia",
    "li wei",
    "anna novak",
    "james brown",
    "sara cohen",
    "omar haddad",
    "yuki tanaka",
    "peter jones",
    "elena rossi",
    "david kim",
    "nina petrova",
]
CITIES = [
    "paris",
    "london",
    "berlin",
    "madrid",
    "rome",
    "vienna",
    "oslo",
    "lisbon",
    "dublin",
    "prague",
    "warsaw",
    "athens",
]
COUNTRIES = [
    "france",
    "england",
    "germany",
    "spain",
    "italy",
    "austria",
    "norway",
    "portugal",
    "ireland",
    "poland",
]
POSITIONS = ["guard", "forward", "center", "goalkeeper", "defender", "midfielder"]
PARTIES = ["democratic", "republican", "green", "liberal", "labour"]
GENRES = ["drama", "comedy", "thriller", "documentary", "animation", "horror"]
VENUES = ["home", "away", "neutral"]
RESULTS = ["won", "lost", "retired", "re-elected", "drawn"]
DEPARTMENTS = ["sales", "finance", "research", "marketing", "support", "legal"]
TITLES = [
    "the long road",
    "blue river",
    "night train",
    "silent hill",
    "red planet",
    "the last word",
    "open water",
    "golden hour",
    "dark matter",
    "first light",
]


@dataclass(frozen=True)
class Column:
    name: str
    phrase: str  # how a question names it
    values: list[str] | tuple[int, int]  # strings to pick from, or an integer range

    @property
    def numeric(self) -> bool:
        return isinstance(self.values, tuple)

    @property
    def sql_type(self) -> str:
        return "INTEGER" if self.numeric else "VARCHAR"

    def value(self, rng: random.Random) -> str:
        if isinstance(self.values, tuple):
            return str(rng.randint(*self.values))
        return rng.choice(self.values)


@dataclass(frozen=True)
class Domain:
    table: str
    entity: str  # plural noun for COUNT(*) questions
    columns: list[Column]


DOMAINS = [
    Domain(
        "game",
        "games",
        [
            Column("opponent", "opponent", TEAMS),
            Column("venue", "venue", VENUES),
            Column("rank", "rank", (1, 30)),
            Column("week", "week", (1, 17)),
            Column("result", "result", RESULTS),
            Column("points", "points", (60, 120)),
        ],
    ),
    Domain(
        "player",
        "players",
        [
            Column("player", "player", PEOPLE),
            Column("position", "position", POSITIONS),
            Column("team", "team", TEAMS),
            Column("goals", "goals", (0, 40)),
            Column("age", "age", (18, 40)),
            Column("nationality", "nationality", COUNTRIES),
        ],
    ),
    Domain(
        "city",
        "cities",
        [
            Column("city", "city", CITIES),
            Column("country", "country", COUNTRIES),
            Column("population", "population in millions", (1, 40)),
            Column("districts", "districts", (1, 60)),
            Column("mayor", "mayor", PEOPLE),
            Column("founded", "year founded", (1960, 1999)),
        ],
    ),
    Domain(
        "film",
        "films",
        [
            Column("title", "title", TITLES),
            Column("director", "director", PEOPLE),
            Column("year", "year", (1980, 2024)),
            Column("rating", "rating", (1, 10)),
            Column("genre", "genre", GENRES),
            Column("budget", "budget", (1, 99)),
        ],
    ),
    Domain(
        "election",
        "elections",
        [
            Column("district", "district", CITIES),
            Column("incumbent", "incumbent", PEOPLE),
            Column("party", "party", PARTIES),
            Column("seats", "seats", (1, 80)),
            Column("first_elected", "first elected", (1980, 2022)),
            Column("result", "result", RESULTS),
        ],
    ),
    Domain(
        "employee",
        "employees",
        [
            Column("name", "name", PEOPLE),
            Column("department", "department", DEPARTMENTS),
            Column("grade", "grade", (1, 20)),
            Column("age", "age", (18, 65)),
            Column("city", "city", CITIES),
            Column("hired", "year hired", (1990, 2024)),
        ],
    ),
]

AGGREGATES = {
    "MIN": ["lowest", "smallest", "minimum"],
    "MAX": ["highest", "largest", "maximum"],
    "AVG": ["average", "mean"],
    "SUM": ["total", "sum of the"],
}
COMPARISONS = {
    ">": ["greater than", "larger than", "more than", "over"],
    "<": ["less than", "smaller than", "fewer than", "under"],
}


class _Row:
    """One row under construction: a table and the columns its CREATE TABLE lists."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.domain = rng.choice(DOMAINS)
        self.table = f"table_name_{rng.randint(1, 99)}" if rng.random() < 0.6 else self.domain.table
        self.used: list[Column] = []

    def pick(self, numeric: bool | None = None) -> Column:
        pool = [
            c
            for c in self.domain.columns
            if c not in self.used and (numeric is None or c.numeric == numeric)
        ]
        column = self.rng.choice(pool)
        self.used.append(column)
        return column

    def context(self) -> str:
        """CREATE TABLE of the columns the query uses, in query order (as the public dataset)."""
        body = ", ".join(f"{c.name} {c.sql_type}" for c in self.used)
        return f"CREATE TABLE {self.table} ({body})"

    def equals(self, column: Column) -> Condition:
        value = column.value(self.rng)
        literal = value if column.numeric else f'"{value}"'
        return Condition(
            f"{column.name} = {literal}",
            f"{column.phrase} is {value}",
            f"a {column.phrase} of {value}",
        )

    def compares(self, column: Column) -> Condition:
        op = self.rng.choice(list(COMPARISONS))
        value, words = column.value(self.rng), self.rng.choice(COMPARISONS[op])
        said = f"{column.phrase} {words} {value}"
        return Condition(f"{column.name} {op} {value}", said, f"a {said}")

    def condition(self) -> Condition:
        column = self.pick()
        if column.numeric and self.rng.random() < 0.5:
            return self.compares(column)
        return self.equals(column)


@dataclass(frozen=True)
class Condition:
    sql: str
    when: str  # "week is 5", read after "when"
    has: str  # "a week of 5", read after "has"


def _select(row: _Row) -> tuple[str, str]:
    target, cond = row.pick(), row.condition()
    question = row.rng.choice(
        [
            f"What is the {target.phrase} when the {cond.when}?",
            f"Which {target.phrase} has {cond.has}?",
            f"Name the {target.phrase} when {cond.when}.",
        ]
    )
    return question, f"SELECT {target.name} FROM {row.table} WHERE {cond.sql}"


def _select_and(row: _Row) -> tuple[str, str]:
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


def _count(row: _Row) -> tuple[str, str]:
    if row.rng.random() < 0.5:
        target, cond = row.pick(), row.condition()
        question = row.rng.choice(
            [
                f"How many {target.phrase} entries have {cond.has}?",
                f"What is the total number of {target.phrase} when {cond.when}?",
            ]
        )
        return question, f"SELECT COUNT({target.name}) FROM {row.table} WHERE {cond.sql}"
    cond = row.compares(row.pick(numeric=True))
    return (
        f"How many {row.domain.entity} have {cond.has}?",
        f"SELECT COUNT(*) FROM {row.table} WHERE {cond.sql}",
    )


def _aggregate(row: _Row) -> tuple[str, str]:
    func = row.rng.choice(list(AGGREGATES))
    target, cond = row.pick(numeric=True), row.condition()
    word = row.rng.choice(AGGREGATES[func])
    return (
        f"What is the {word} {target.phrase} when {cond.when}?",
        f"SELECT {func}({target.name}) FROM {row.table} WHERE {cond.sql}",
    )


def _order(row: _Row) -> tuple[str, str]:
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
    dept = rng.choice(DEPARTMENTS)
    budget = rng.randint(1, 99)
    target = rng.choice([("name", "names"), ("salary", "salaries"), ("age", "ages")])
    context = (
        "CREATE TABLE department (department_id INTEGER, name VARCHAR, budget INTEGER); "
        "CREATE TABLE employee (employee_id INTEGER, name VARCHAR, salary INTEGER, "
        "age INTEGER, department_id INTEGER)"
    )
    base = "FROM employee AS T1 JOIN department AS T2 ON T1.department_id = T2.department_id WHERE "
    if rng.random() < 0.5:
        return (
            f"What are the {target[1]} of employees in the {dept} department?",
            context,
            f'SELECT T1.{target[0]} {base}T2.name = "{dept}"',
        )
    op = rng.choice(list(COMPARISONS))
    return (
        f"How many employees work in departments with a budget {COMPARISONS[op][0]} {budget}?",
        context,
        f"SELECT COUNT(*) {base}T2.budget {op} {budget}",
    )


TEMPLATES: list[tuple[float, Callable[[_Row], tuple[str, str]]]] = [
    (0.24, _select),
    (0.25, _select_and),
    (0.16, _count),
    (0.2, _aggregate),
    (0.09, _order),
]
JOIN_SHARE = 0.06


def generate(n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` rows, the same for the same seed."""
    rng = random.Random(seed)
    weights = [w for w, _ in TEMPLATES]
    rows = []
    for _ in range(n):
        if rng.random() < JOIN_SHARE:
            question, context, answer = _join(rng)
        else:
            row = _Row(rng)
            [template] = rng.choices([t for _, t in TEMPLATES], weights=weights)
            question, answer = template(row)
            context = row.context()
        rows.append({"question": question, "context": context, "answer": answer})
    return rows
