"""Generated rows in the public dataset's WikiSQL conventions (`tunekit.synthetic` mixes them
in): a table `table_name_N` whose every column is VARCHAR, questions that name columns in their
own words (often Capitalized, "What is the lowest Attendance when the Week is 5?") or leave them
to the value ("on March 3", "at Anfield", "against the Leeds Rhinos"), string literals
lower-cased in the SQL whatever the question writes, numbers compared for equality often
written as strings (`week = "5"`), and "How many X ...?" answered with `COUNT(x)`.
"""

from __future__ import annotations

import random
import re
import string

from sqlglot.tokens import Tokenizer

from tunekit import lexicon as lx
from tunekit import vocabulary as vocab
from tunekit.lexicon import WIKI_TABLES
from tunekit.phrasing import wrap

SQL_WORDS = frozenset(word.lower() for word in Tokenizer.KEYWORDS)

MONTHS = lx.MONTHS
TEAM_NAMES = [
    "Rovers",
    "United",
    "City",
    "Rangers",
    "Wanderers",
    "Athletic",
    "Bears",
    "Lions",
    "Tigers",
    "Eagles",
    "Hawks",
    "Wolves",
    "Sharks",
    "Giants",
    "Kings",
    "Knights",
    "Warriors",
    "Rhinos",
    "Saints",
    "Pirates",
    "Royals",
    "Falcons",
    "Panthers",
    "Dragons",
    "Comets",
]


def value(kind: str, rng: random.Random) -> str:
    """A value of a WikiSQL column of `kind`, as a question writes it."""
    if kind == "num":
        return str(rng.choice((rng.randint(1, 20), rng.randint(1, 99), rng.randint(100, 90000),
                               rng.randint(1950, 2024))))  # fmt: skip
    if kind == "person":
        name = f"{rng.choice(lx.FIRST)} {rng.choice(lx.LAST)}"
        return name if rng.random() < 0.85 else f"{name} {rng.choice(('Jr.', 'II', 'III'))}"
    if kind == "place":
        roll = rng.random()
        if roll < 0.4:
            return rng.choice(lx.CITIES)
        if roll < 0.6:
            return rng.choice(lx.COUNTRIES)
        return f"{rng.choice(lx.TITLE_WORDS)} {rng.choice(('Park', 'Stadium', 'Arena', 'Ground', 'Oval', 'Field'))}"  # noqa: E501
    if kind == "date":
        month, day = rng.choice(MONTHS), rng.randint(1, 28)
        return rng.choice((f"{month} {day}", f"{month} {day}, {rng.randint(1960, 2023)}",
                           f"{day} {month} {rng.randint(1960, 2023)}"))  # fmt: skip
    if kind == "team":
        city, team, org = rng.choice(lx.CITIES), rng.choice(TEAM_NAMES), rng.choice(lx.ORG_WORDS)
        prefix = rng.choice(("St", "Port", "North", "New"))
        return rng.choice((f"{city} {team}", city, f"{org} {team}", f"{city} {org} {team}",
                           f"{prefix} {rng.choice(lx.TITLE_WORDS)}"))  # fmt: skip
    roll = rng.random()  # text of its own: results, scores, notes, codes
    if roll < 0.25:
        return f"{rng.randint(0, 9)}-{rng.randint(0, 9)}"
    if roll < 0.4:
        return f"{rng.choice('wl')} {rng.randint(10, 40)}-{rng.randint(0, 35)}"
    if roll < 0.5:
        return f"{rng.randint(1, 59)}:{rng.randint(10, 59)}.{rng.randint(10, 99)}"
    if roll < 0.75:
        return " ".join(rng.sample(vocab.WORDS, rng.choice((1, 1, 2))))
    return rng.choice(lx.TITLE_WORDS) + rng.choice(("", " " + rng.choice(lx.TITLE_WORDS)))


def random_columns(rng: random.Random) -> tuple[tuple[str, str, str], ...]:
    """A table of made-up and English column names (the kind is random)."""
    kinds = ("num", "num", "person", "place", "date", "team", "text", "text")
    columns: dict[str, tuple[str, str, str]] = {}
    while len(columns) < rng.randint(4, 7):
        word = rng.choice(vocab.WORDS) if rng.random() < 0.6 else rng.choice(vocab.MADE_UP)
        if rng.random() < 0.3:
            word = f"{word}_{rng.choice(vocab.WORDS)}"
        if word in SQL_WORDS:
            continue
        columns.setdefault(word, (word, word.replace("_", " "), rng.choice(kinds)))
    return tuple(columns.values())


def said(phrase: str, rng: random.Random) -> str:
    """A column's words as a question writes them: as is, or Capitalized."""
    roll = rng.random()
    if roll < 0.45:
        return string.capwords(phrase)
    if roll < 0.6:
        return phrase[:1].upper() + phrase[1:]
    return phrase


def unnamed(kind: str, shown: str, rng: random.Random) -> str:
    """A condition that names the value only ("on March 3", "at Anfield")."""
    return {
        "date": rng.choice((f"on {shown}", f"for {shown}", f"on the date of {shown}")),
        "place": rng.choice((f"at {shown}", f"in {shown}", f"played at {shown}")),
        "team": rng.choice((f"against {shown}", f"against the {shown}", f"for {shown}")),
        "person": rng.choice((f"for {shown}", f"with {shown}", f"by {shown}")),
    }.get(kind, f"for {shown}")


def condition(
    column: tuple[str, str, str],
    rng: random.Random,
    numbers_ok: bool = True,
    implied: bool = True,
):
    """(sql, question text) of one condition on `column`; with `implied`, it may name the
    value only ("on March 3"), which the caller allows only where that tells the column."""
    name, phrase, kind = column
    words = said(phrase, rng)
    if kind == "num" and numbers_ok and rng.random() < 0.5:
        op = rng.choice((">", "<"))
        number = rng.randint(1, 90) if rng.random() < 0.6 else rng.randint(1950, 2020)
        comparison = rng.choice({">": ("larger than", "greater than", "more than", "over",
                                       "higher than", "bigger than", "after"),
                                 "<": ("smaller than", "less than", "fewer than", "under",
                                       "lower than", "before")}[op])  # fmt: skip
        text = rng.choice((f"{words} {comparison} {number}", f"a {words} {comparison} {number}",
                           f"the {words} is {comparison} {number}"))  # fmt: skip
        return f"{name} {op} {number}", text
    shown = value(kind, rng)
    literal = shown.lower()
    sql_value = f'"{literal}"'
    if kind == "num" and rng.random() < 0.45:
        sql_value = literal  # numbers are written bare as often as quoted
    if kind == "text" and rng.random() < 0.5:
        shown = shown.lower()  # the public data's questions often write values as stored
    if implied and kind in ("date", "place", "team", "person") and rng.random() < 0.35:
        text = unnamed(kind, shown, rng)
    else:
        text = rng.choice((f"the {words} is {shown}", f"{words} is {shown}",
                           f"a {words} of {shown}", f"{words} of {shown}",
                           f"the {words} was {shown}", f"{shown} {words}",
                           f"{words} {shown}"))  # fmt: skip
    return f"{name} = {sql_value}", text


def _only_of_its_kind(column: tuple[str, str, str], columns: tuple[tuple[str, str, str], ...]):
    """Whether no other column of the table holds values of `column`'s kind: then a value alone
    ("at Anfield") tells which column it is in; with a jockey and a trainer "for Ana Silva"
    does not, nor among made-up names, and a question must say what its SQL asks."""
    return sum(c[2] == column[2] for c in columns) == 1


# "Name the X for on March 3": a template's preposition before a condition that has its own
_DOUBLED = re.compile(r"\b(for|with|has|had|when|have) (on|in|at|against|for|by|played at)\b")

AGGREGATES = {
    "MIN": ("lowest", "smallest", "least", "minimum", "fewest"),
    "MAX": ("highest", "largest", "most", "maximum", "biggest", "greatest"),
    "AVG": ("average", "mean"),
    "SUM": ("total", "sum of", "sum of the", "total number of"),
}


def generate_row(rng: random.Random) -> dict[str, str]:
    """One WikiSQL-style row."""
    known = rng.random() < 0.75
    columns = tuple(rng.choice(WIKI_TABLES) if known else random_columns(rng))
    table = f"table_name_{rng.randint(1, 99)}"
    target = rng.choice(columns)
    others = [c for c in columns if c is not target]
    chosen = rng.sample(others, rng.choices((1, 2, 3), (6, 3, 1))[0])
    conds = [condition(c, rng, implied=known and _only_of_its_kind(c, columns)) for c in chosen]
    where = " AND ".join(sql for sql, _ in conds)
    texts = [text for _, text in conds]
    joined = " and ".join(texts) if len(texts) < 3 or rng.random() < 0.5 else (
        ", ".join(texts[:-1]) + ", and " + texts[-1])  # fmt: skip
    tname, tphrase, tkind = target
    t = said(tphrase, rng)
    roll = rng.random()
    if roll < 0.5:
        sql = f"SELECT {tname} FROM {table} WHERE {where}"
        who = "Who" if tkind == "person" else "What"
        options = [f"What is the {t} when {joined}?", f"Name the {t} for {joined}",
                   f"Which {t} has {joined}?", f"What {t} had {joined}?", f"Tell me the {t} for {joined}",  # noqa: E501
                   f"{who} was the {t} when {joined}?", f"What is the {t} with {joined}?",
                   f"Name the {t} when {joined}", f"what {t} has {joined}?",
                   f"Which {t} is listed for {joined}?", f"{t} for {joined}",
                   f"When {joined}, what is the {t}?", f"Give me the {t} that has {joined}",
                   f"What was the {t} for {joined}?", f"Which {t} goes with {joined}?",
                   f"The {t} when {joined}?", f"Find the {t} where {joined}.",
                   f"{who} is listed as {t} when {joined}?"]  # fmt: skip
    elif roll < 0.75 and tkind == "num":
        func = rng.choice(list(AGGREGATES))
        word = rng.choice(AGGREGATES[func])
        sql = f"SELECT {func}({tname}) FROM {table} WHERE {where}"
        options = [
            f"What is the {word} {t} when {joined}?",
            f"Name the {word} {t} for {joined}",
            f"Which {word} {t} has {joined}?",
            f"What is the {word} {t} with {joined}?",
            f"Tell me the {word} {t} for {joined}",
            f"What was the {word} {t} when {joined}?",
        ]
    else:
        sql = f"SELECT COUNT({tname}) FROM {table} WHERE {where}"
        many = t if t.endswith("s") else t + "s" if rng.random() < 0.6 else t
        options = [
            f"How many {many} have {joined}?",
            f"What is the total number of {t} when {joined}?",
            f"How many {many} were there when {joined}?",
            f"Name the number of {t} for {joined}",
            f"How many {many} had {joined}?",
            f"What is the number of {t} with {joined}?",
        ]
    question = _DOUBLED.sub(r"\2", rng.choice(options))
    question = wrap(question[:1].upper() + question[1:], rng)
    context = f"CREATE TABLE {table} ({', '.join(f'{c[0]} VARCHAR' for c in columns)})"
    return {"question": question, "context": context, "answer": sql}
