"""The everyday tables `tunekit.synthetic_everyday` asks about: a table made from an entity of
`tunekit.lexicon` (`make_table`), its columns' names and values, and the phrases a question
uses for a condition on them (`condition`, `noun_phrase`)."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from tunekit import lexicon as lx
from tunekit.lexicon import CONCEPTS, COUNTED, FLAGGED, Concept, Entity, counted, flagged


def plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


@dataclass(frozen=True)
class Col:
    name: str
    concept: Concept | None  # None: the naming column or a key
    numeric: bool
    kind: str = ""  # the naming column's kind: person, title, model, address, plate, species

    def value(self, rng: random.Random) -> str | int:
        if self.concept is None:
            return label_value(self.kind, rng)
        if self.concept.numeric:
            return _number(self.concept, rng)
        if self.concept.person:
            return person(rng)
        return rng.choice(self.concept.values)

    def phrase(self, rng: random.Random) -> str:
        if self.concept is None:
            return self.name.replace("_", " ")
        return rng.choice((*self.concept.phrases, self.name.replace("_", " ")))


def person(rng: random.Random) -> str:
    return f"{rng.choice(lx.FIRST)} {rng.choice(lx.LAST)}"


def label_value(kind: str, rng: random.Random) -> str:
    """A value of a naming column."""
    if kind == "person":
        return person(rng)
    if kind == "model":
        return (
            f"{rng.choice(lx.ORG_WORDS)} {rng.choice(string.ascii_uppercase)}{rng.randint(1, 99)}"
        )
    if kind == "address":
        return f"{rng.randint(1, 300)} {rng.choice(lx.TITLE_WORDS)} Street"
    if kind == "plate":
        letters = "".join(rng.choices(string.ascii_uppercase, k=2))
        return f"{letters}-{rng.randint(100, 999)}"
    if kind == "species":
        return rng.choice(lx.TITLE_WORDS).lower() + rng.choice(("", " " + rng.choice(lx.TYPES)))
    roll = rng.random()
    if roll < 0.45:
        return f"{rng.choice(lx.TITLE_WORDS)} {rng.choice(lx.TITLE_WORDS)}"
    if roll < 0.6:
        return f"The {rng.choice(lx.TITLE_WORDS)} {rng.choice(lx.TITLE_WORDS)}"
    if roll < 0.8:
        return f"{rng.choice(lx.ORG_WORDS)} {rng.choice(lx.ORG_KINDS)}"
    return rng.choice(lx.TITLE_WORDS) + rng.choice(("", "ville", "ford", "holm", "a", "o"))


def _number(concept: Concept, rng: random.Random) -> int:
    low, high = concept.low, concept.high
    value = rng.randint(low, high)
    if high - low > 1000 and rng.random() < 0.7:  # round numbers, as people ask
        value = round(value, -len(str(abs(value))) + 2)
    return value


@dataclass
class Table:
    """An entity's table as a row's context shows it."""

    entity: Entity
    name: str
    label: Col
    key: Col | None
    cols: list[Col]
    foreign: Col | None = None
    split_name: bool = False  # people named by first_name and last_name
    types: tuple[str, str, str] = ("INTEGER", "INTEGER", "VARCHAR")  # keys, numbers, text

    @property
    def columns(self) -> list[Col]:
        listed = [c for c in (self.key,) if c is not None]
        if self.split_name:
            listed += [
                Col("first_name", None, False, "first"),
                Col("last_name", None, False, "last"),
            ]
        else:
            listed.append(self.label)
        return [*listed, *self.cols, *([self.foreign] if self.foreign else [])]

    def select_label(self, alias: str = "") -> str:
        """The naming column(s) in a SELECT."""
        if self.split_name:
            return f"{alias}first_name, {alias}last_name"
        return f"{alias}{self.label.name}"

    def where_label(self, value: str, alias: str = "") -> str:
        """The row named `value`, as a WHERE condition."""
        if self.split_name and " " in value:
            first, last = value.split(" ", 1)
            return f'{alias}first_name = "{first}" AND {alias}last_name = "{last}"'
        return f'{alias}{self.label.name} = "{value}"'

    def context(self) -> str:
        body = ", ".join(f"{c.name} {self.sql_type(c)}" for c in self.columns)
        return f"CREATE TABLE {self.name} ({body})"

    def sql_type(self, column: Col) -> str:
        key, number, text = self.types
        if not column.numeric:
            return text
        return key if column.concept is None else number

    def noun(self, rng: random.Random, many: bool = True) -> str:
        nouns = [self.entity.plural if many else self.entity.singular]
        nouns += [plural(n) if many else n for n in self.entity.nouns]
        return rng.choice(nouns)

    def numeric(self) -> list[Col]:
        return [c for c in self.cols if c.numeric]

    def text(self) -> list[Col]:
        return [c for c in self.cols if not c.numeric]


# Column types as people declare them (SQLite's affinities: INT and INTEGER, REAL, TEXT and
# VARCHAR): keys, numbers, text. Most tables as the public data writes them.
TYPES = (
    ("INTEGER", "INTEGER", "VARCHAR"),
    ("INTEGER", "REAL", "VARCHAR"),
    ("INTEGER", "INTEGER", "TEXT"),
    ("INTEGER", "REAL", "TEXT"),
    ("INT", "INT", "TEXT"),
    ("INTEGER", "INTEGER", "VARCHAR(255)"),
)
TYPE_WEIGHTS = (0.55, 0.15, 0.1, 0.08, 0.06, 0.06)


def make_table(entity: Entity, rng: random.Random, width: int | None = None) -> Table:
    """A table of `entity`: its naming column, an id (often), and some of its concepts."""
    kind = "person" if entity.label_person else {
        "model": "model", "address": "address", "plate": "plate", "species": "species",
    }.get(entity.label, "title")  # fmt: skip
    label_name = entity.label
    if entity.label == "name" and rng.random() < 0.25:
        label_name = rng.choice(("name", f"{entity.singular.replace(' ', '_')}_name", "full_name"
                                 if entity.label_person else "title"))  # fmt: skip
    label = Col(label_name, None, False, kind)
    key = None
    if rng.random() < 0.6:
        key = Col(f"{entity.singular.replace(' ', '_')}_id", None, True, "key")
    count = width or rng.randint(2, min(5, len(entity.concepts)))
    concepts = [CONCEPTS[c] for c in rng.sample(entity.concepts, count)]
    if rng.random() < 0.3:
        concepts.append(counted(rng.choice(COUNTED)))
    if rng.random() < 0.15:
        concepts.append(flagged(rng.choice(FLAGGED)))
    rng.shuffle(concepts)
    cols = [Col(column_name(c, entity, rng), c, c.numeric) for c in concepts]
    unique: dict[str, Col] = {}
    for col in cols:
        if col.name not in (label.name, key.name if key else "", "first_name", "last_name"):
            unique.setdefault(col.name, col)
    split = entity.label_person and label_name == "name" and rng.random() < 0.2
    return Table(entity, rng.choice(entity.table_names), label, key, list(unique.values()),
                 split_name=split, types=rng.choices(TYPES, TYPE_WEIGHTS)[0])  # fmt: skip


_YEARS = ("founded", "opened", "built", "released", "born", "year", "hired", "joined", "created")
_MODIFIERS = ("total", "annual", "average", "current", "max", "min", "avg")
# concepts a modifier reads well with ("annual_revenue", "max_speed")
_MODIFIED = ("price", "salary", "revenue", "budget", "visitors", "temperature", "rent",
             "donations", "speed", "employees", "members", "quantity")  # fmt: skip


def column_name(concept: Concept, entity: Entity, rng: random.Random) -> str:
    """A name a table gives `concept`: one of its own, now and then with the entity's name or a
    modifier in front (`castle_height`, `annual_revenue`)."""
    name = rng.choice(concept.names)
    roll = rng.random()
    if roll < 0.1:
        return f"{entity.singular.replace(' ', '_')}_{name}"
    if roll < 0.17 and concept.key in _MODIFIED and "_" not in name:
        return f"{rng.choice(_MODIFIERS)}_{name}"
    return name


def literal(value: str | int) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


# How a condition reads after the entity noun ("wines ___"), for each kind of comparison
def equals_phrase(col: Col, value: str | int, rng: random.Random) -> str:
    concept, said = col.concept, str(value)
    options = [
        f"whose {col.phrase(rng)} is {said}",
        f"with {article(col.phrase(rng))} of {said}",
        f"where the {col.phrase(rng)} is {said}",
        f"that have {said} as {col.phrase(rng)}",
        f"with {col.phrase(rng)} {said}",
    ]
    if concept is not None and concept.said:
        implied = [t.format(v=said) for t in concept.said]
        options = implied * 3 + options  # by implication, most often
    return rng.choice(options)


def compare_phrase(col: Col, op: str, value: int, rng: random.Random) -> str:
    concept, said = col.concept, str(value)
    words = {">": ("more than", "over", "above", "greater than", "higher than"),
             "<": ("less than", "under", "below", "lower than", "smaller than")}[op]  # fmt: skip
    options = [
        f"whose {col.phrase(rng)} is {rng.choice(words)} {said}",
        f"with {article(col.phrase(rng))} {rng.choice(words)} {said}",
        f"with {col.phrase(rng)} {rng.choice(words)} {said}",
        f"where the {col.phrase(rng)} is {rng.choice(words)} {said}",
    ]
    implied = () if concept is None else concept.above if op == ">" else concept.below
    if implied:
        options = [t.format(v=said) for t in implied] * 3 + options
    return rng.choice(options)


@dataclass
class Cond:
    sql: str
    text: str  # after the noun
    adjective: str = ""  # or before the noun ("red")
    noun: str = ""  # or the noun itself ("owls" for species = "owl")


def condition(table: Table, rng: random.Random, col: Col | None = None,
              numeric: bool | None = None, alias: str = "") -> Cond:  # fmt: skip
    pool = [c for c in table.cols if numeric is None or c.numeric == numeric] or table.cols
    col = col or rng.choice(pool)
    name = f"{alias}{col.name}"
    value = col.value(rng)
    if col.numeric and isinstance(value, int) and rng.random() < 0.6:
        op = rng.choice((">", "<"))
        return Cond(f"{name} {op} {value}", compare_phrase(col, op, value, rng))
    if col.concept is not None and col.concept.key.startswith("has:"):
        noun = col.concept.key.split(":", 1)[1]
        value = rng.choice(("yes", "no"))
        phrase = rng.choice([f"with {article(noun)}", f"that have {article(noun)}",
                             f"with {article(noun)} available"] if value == "yes" else
                            [f"without {article(noun)}", f"with no {noun}",
                             f"that have no {noun}"])  # fmt: skip
        return Cond(f'{name} = "{value}"', phrase)
    if col.concept is not None and col.concept.noun and rng.random() < 0.6:
        return Cond(f"{name} = {literal(value)}", "", noun=str(value))
    if col.concept is not None and col.concept.adjective and rng.random() < 0.5:
        return Cond(f"{name} = {literal(value)}", "", str(value))
    if not col.numeric and rng.random() < 0.08:  # not equal
        phrase = rng.choice([f"not {t.format(v=value)}" for t in col.concept.said]
                            if col.concept and col.concept.said and rng.random() < 0.6
                            else [f"whose {col.phrase(rng)} is not {value}"])  # fmt: skip
        return Cond(f'{name} != "{value}"', phrase)
    return Cond(f"{name} = {literal(value)}", equals_phrase(col, value, rng))


def noun_phrase(table: Table, conds: list[Cond], rng: random.Random, many: bool = True) -> str:
    """The entity noun with its conditions: "red wines from Chile with a rating over 8"."""
    adjectives = " ".join(c.adjective for c in conds if c.adjective)
    after = [c.text for c in conds if not c.adjective and not c.noun]
    nouns = [c.noun for c in conds if c.noun]
    noun = (plural(nouns[0]) if many else nouns[0]) if nouns else table.noun(rng, many)
    head = f"{adjectives} {noun}" if adjectives else noun
    if not after:
        return head
    return head + " " + " and ".join(after)


def where(conds: list[Cond]) -> str:
    return (" WHERE " + " AND ".join(c.sql for c in conds)) if conds else ""
