"""Generated rows that ask about everyday tables the way people do (`tunekit.synthetic` mixes
them in): "Who is the oldest journalist?", "How many wines come from Chile?", "For each city,
how many parks are there?".

A table is made from an `Entity` of `tunekit.lexicon` (its naming column, a few of its concepts,
often an id); a question names a column by one of its phrases or only implies it (a wh-word, a
superlative, a comparison, a value after a preposition or before the noun). Each SQL shape has
many phrasings, so that the model learns the shape, not a sentence.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from tunekit import lexicon as lx
from tunekit.lexicon import CONCEPTS, COUNTED, ENTITIES, FLAGGED, Concept, Entity, counted, flagged
from tunekit.phrasing import wrap

_BY_NAME = {e.singular: e for e in ENTITIES}


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
        body = ", ".join(f"{c.name} {'INTEGER' if c.numeric else 'VARCHAR'}" for c in self.columns)
        return f"CREATE TABLE {self.name} ({body})"

    def noun(self, rng: random.Random, many: bool = True) -> str:
        nouns = [self.entity.plural if many else self.entity.singular]
        nouns += [plural(n) if many else n for n in self.entity.nouns]
        return rng.choice(nouns)

    def numeric(self) -> list[Col]:
        return [c for c in self.cols if c.numeric]

    def text(self) -> list[Col]:
        return [c for c in self.cols if not c.numeric]


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
                 split_name=split)  # fmt: skip


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


def _conds(table: Table, rng: random.Random, most: int = 2, exclude: tuple[Col, ...] = ()):
    count = rng.choices((0, 1, 2), weights=(2, 5, 2))[0] if most >= 2 else rng.randint(0, most)
    pool = [c for c in table.cols if c not in exclude]
    chosen = rng.sample(pool, min(count, len(pool)))
    return [condition(table, rng, col) for col in chosen]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# The SQL shapes: each returns (question, query) over one table
def list_rows(t: Table, rng: random.Random) -> tuple[str, str]:
    conds = _conds(t, rng) or [condition(t, rng)]
    what = noun_phrase(t, conds, rng)
    label = t.label.phrase(rng)
    question = rng.choice([
        f"Which {what}?", f"List the {what}.", f"Show me the {what}.", f"Name the {what}.",
        f"What are the {plural(label)} of the {what}?", f"Give me the {plural(label)} of {what}.",
        f"list all {what}", f"Find the {what}.", f"Which {what} are there?",
        f"I need the {plural(label)} of all {what}.",
    ] + ([f"Who are the {what}?", f"Who is {rng.choice(['a', 'the'])} {what}?"]
         if t.entity.label_person else []))  # fmt: skip
    return question, f"SELECT {t.select_label()} FROM {t.name}{where(conds)}"


def lookup(t: Table, rng: random.Random) -> tuple[str, str]:
    """One column of a row named by its label: "How old is Ana Silva?"."""
    target = rng.choice(t.cols)
    name = t.label.value(rng)
    concept, phrase = target.concept, target.phrase(rng)
    options = [f"What is the {phrase} of {name}?", f"What's {name}'s {phrase}?",
               f"Tell me the {phrase} of {name}.", f"{phrase} of {name}?",
               f"What {phrase} does {name} have?", f"Give me {name}'s {phrase}."]  # fmt: skip
    if concept is not None:
        for asked in concept.asked:
            if asked in ("Who",):
                for verb in concept.verb:
                    options += [f"Who {verb} {name}?"] * 2
            elif asked.startswith("How many") or asked == "How many":
                noun = asked.removeprefix("How many").strip() or phrase
                options += [f"How many {noun} does {name} have?"] * 2
            elif asked in ("When was", "In what year was"):
                verb = concept.said[0].split(" in ")[0] if concept.said else "made"
                options += [f"{asked} {name} {verb}?"] * 2
            elif asked.startswith(("Which", "What", "In which", "In what", "On which")):
                options += [f"{asked} is {name} in?", f"{asked} is {name} from?"]
            elif asked == "Where":
                options += [
                    f"Where is {name}?",
                    f"Where is {name} located?",
                    f"Where is {name} based?",
                ]
            elif asked in ("How much does", "What does"):
                verb = "weigh" if concept.key == "weight" else "cost"
                options += [f"How much does {name} {verb}?"]
                if verb == "cost":
                    options.append(f"What does {name} cost?")
            else:  # How old, How tall, How long, How deep...
                options += [f"{asked} is {name}?"] * 2
    question = rng.choice(options)
    return question, f"SELECT {target.name} FROM {t.name} WHERE {t.where_label(str(name))}"


def count_rows(t: Table, rng: random.Random) -> tuple[str, str]:
    conds = _conds(t, rng)
    what = noun_phrase(t, conds, rng)
    options = [f"How many {what} are there?", f"How many {what}?", f"Count the {what}.",
               f"What is the number of {what}?", f"how many {what} do we have",
               f"Give me the count of {what}.", f"How many {what} are in the table?",
               f"What is the total number of {what}?"]  # fmt: skip
    return rng.choice(options), f"SELECT COUNT(*) FROM {t.name}{where(conds)}"


AGG_WORDS = {
    "AVG": ("average", "mean"),
    "SUM": ("total", "combined", "sum of the"),
    "MAX": ("highest", "maximum", "largest", "biggest"),
    "MIN": ("lowest", "minimum", "smallest"),
}


def aggregate(t: Table, rng: random.Random) -> tuple[str, str]:
    numeric = t.numeric()
    if not numeric:
        return count_rows(t, rng)
    target = rng.choice(numeric)
    conds = _conds(t, rng, exclude=(target,))
    func = rng.choice(list(AGG_WORDS))
    word, phrase = rng.choice(AGG_WORDS[func]), target.phrase(rng)
    what = noun_phrase(t, conds, rng)
    options = [f"What is the {word} {phrase} of {what}?", f"What's the {word} {phrase} of the {what}?",  # noqa: E501
               f"Find the {word} {phrase} among {what}.", f"{word} {phrase} of {what}",
               f"What is the {word} {phrase} for {what}?"]  # fmt: skip
    concept = target.concept
    if func in ("MAX", "MIN") and concept is not None:
        sup = concept.more if func == "MAX" else concept.less
        for s in sup:
            one = noun_phrase(t, conds, rng, many=False)
            for asked in concept.asked:
                if asked.startswith("How") and " " in asked and asked != "How much does":
                    options += [f"{asked} is the {s} {one}?"] * 2
            options += [f"What is the {phrase} of the {s} {one}?"]
    if func == "SUM" and concept is not None:
        options += [f"How many {phrase} do the {what} have in total?",
                    f"What is the {phrase} of all {what} combined?"]  # fmt: skip
    if func == "AVG":
        options += [f"On average, what is the {phrase} of {what}?",
                    f"What {phrase} do {what} have on average?"]  # fmt: skip
    return rng.choice(options), f"SELECT {func}({target.name}) FROM {t.name}{where(conds)}"


def superlative(t: Table, rng: random.Random) -> tuple[str, str]:
    numeric = [c for c in t.numeric() if c.concept and (c.concept.more or c.concept.less)]
    if not numeric:
        return list_rows(t, rng)
    key = rng.choice(numeric)
    concept = key.concept
    assert concept is not None
    descending = (rng.random() < 0.55 and bool(concept.more)) or not concept.less
    sup = rng.choice(concept.more if descending else concept.less)
    conds = _conds(t, rng, most=1, exclude=(key,))
    one = noun_phrase(t, conds, rng, many=False)
    many = noun_phrase(t, conds, rng)
    order = f" ORDER BY {key.name}{' DESC' if descending else ''}"
    if rng.random() < 0.2:
        order = f" ORDER BY {key.name} {'DESC' if descending else 'ASC'}"
    who = "Who" if t.entity.label_person else "Which"
    if rng.random() < 0.25:  # the top k
        k = rng.randint(2, 10)
        words = {2: "two", 3: "three", 4: "four", 5: "five", 10: "ten"}
        said = words.get(k, str(k)) if rng.random() < 0.5 else str(k)
        question = rng.choice([f"List the {said} {sup} {many}.", f"Which are the {said} {sup} {many}?",  # noqa: E501
                               f"Show the top {said} {many} by {key.phrase(rng)}.",
                               f"Name the {said} {sup} {many}."])  # fmt: skip
        if said == str(k) or said in words.values():
            return (
                question,
                f"SELECT {t.select_label()} FROM {t.name}{where(conds)}{order} LIMIT {k}",
            )
    question = rng.choice([
        f"{who} is the {sup} {one}?", f"What is the {sup} {one}?", f"Which {one} is the {sup}?",
        f"Name the {sup} {one}.", f"Find the {sup} {one}.", f"the {sup} {one}?",
        f"Which {one} has the {'highest' if descending else 'lowest'} {key.phrase(rng)}?",
        f"Which {one} has the {'largest' if descending else 'smallest'} {key.phrase(rng)}?",
        f"Tell me the {sup} of the {many}.",
    ])  # fmt: skip
    return question, f"SELECT {t.select_label()} FROM {t.name}{where(conds)}{order} LIMIT 1"


def compare(t: Table, rng: random.Random) -> tuple[str, str]:
    numeric = t.numeric()
    if not numeric:
        return list_rows(t, rng)
    col = rng.choice(numeric)
    value = col.value(rng)
    op = rng.choice((">", "<"))
    cond = Cond(f"{col.name} {op} {value}", compare_phrase(col, op, int(value), rng))
    conds = [cond, *_conds(t, rng, most=1, exclude=(col,))]
    rng.shuffle(conds)
    what = noun_phrase(t, conds, rng)
    options = [f"Which {what}?", f"List the {what}.", f"Show all {what}.", f"Name the {what}."]
    if t.entity.label_person:
        options.append(f"Who are the {what}?")
    return rng.choice(options), f"SELECT {t.select_label()} FROM {t.name}{where(conds)}"


def either(t: Table, rng: random.Random) -> tuple[str, str]:
    """Two values of one column: "from France or Spain"."""
    text = [c for c in t.text() if c.concept and c.concept.values]
    if not text:
        return count_rows(t, rng)
    col = rng.choice(text)
    first, second = rng.sample(col.concept.values, 2)  # type: ignore[union-attr]
    said = col.concept.said or ("with {v}",)  # type: ignore[union-attr]
    template = rng.choice(said)
    noun = t.noun(rng)
    phrase = template.format(v=f"{first} or {second}")
    if col.concept.adjective and rng.random() < 0.5:  # type: ignore[union-attr]
        phrase, noun = "", f"{first} or {second} {noun}"
    sql_where = f' WHERE {col.name} = "{first}" OR {col.name} = "{second}"'
    if rng.random() < 0.5:
        question = rng.choice(
            [f"How many {noun} {phrase} are there?", f"How many {noun} are {phrase}?"]
        )
        return " ".join(question.split()), f"SELECT COUNT(*) FROM {t.name}{sql_where}"
    question = rng.choice([f"Which {noun} are {phrase}?", f"List the {noun} {phrase}."])
    return " ".join(question.split()), f"SELECT {t.select_label()} FROM {t.name}{sql_where}"


def distinct(t: Table, rng: random.Random) -> tuple[str, str]:
    text = t.text()
    if not text:
        return count_rows(t, rng)
    col = rng.choice(text)
    phrase, noun = col.phrase(rng), t.noun(rng)
    conds = _conds(t, rng, most=1, exclude=(col,))
    what = noun_phrase(t, conds, rng)
    if rng.random() < 0.45:
        question = rng.choice(([f"How many different {plural(phrase)} are there?"]
                                if not conds else []) + [
                               f"How many distinct {plural(phrase)} do the {what} have?",
                               f"In how many different {plural(phrase)} are there {what}?",
                               f"Count the different {plural(phrase)} of {what}."])  # fmt: skip
        return question, f"SELECT COUNT(DISTINCT {col.name}) FROM {t.name}{where(conds)}"
    question = rng.choice([f"What are the different {plural(phrase)} of the {what}?",
                           f"List the distinct {plural(phrase)} of {what}.",
                           f"Which {plural(phrase)} do the {what} have?"]
                          + ([f"Show every {phrase} that {noun} have, without repeats."]
                             if not conds else []))  # fmt: skip
    return question, f"SELECT DISTINCT {col.name} FROM {t.name}{where(conds)}"


def grouped(t: Table, rng: random.Random) -> tuple[str, str]:
    text = t.text()
    if not text:
        return count_rows(t, rng)
    col = rng.choice(text)
    phrase, noun = col.phrase(rng), t.noun(rng)
    roll = rng.random()
    if roll < 0.45:
        question = rng.choice([f"How many {noun} are there in each {phrase}?",
                               f"For each {phrase}, how many {noun} are there?",
                               f"Count the {noun} per {phrase}.",
                               f"Show each {phrase} and the number of {noun}.",
                               f"number of {noun} by {phrase}"])  # fmt: skip
        return question, f"SELECT {col.name}, COUNT(*) FROM {t.name} GROUP BY {col.name}"
    if roll < 0.65 and t.numeric():
        target = rng.choice(t.numeric())
        func = rng.choice(("AVG", "MAX", "MIN", "SUM"))
        word = rng.choice(AGG_WORDS[func])
        question = rng.choice([f"What is the {word} {target.phrase(rng)} of {noun} for each {phrase}?",  # noqa: E501
                               f"For each {phrase}, what is the {word} {target.phrase(rng)}?",
                               f"Show the {word} {target.phrase(rng)} per {phrase}."])  # fmt: skip
        return question, (f"SELECT {col.name}, {func}({target.name}) FROM {t.name} "
                          f"GROUP BY {col.name}")  # fmt: skip
    if roll < 0.82:
        n = rng.randint(1, 9)
        question = rng.choice([f"Which {plural(phrase)} have more than {n} {noun}?",
                               f"List the {plural(phrase)} with over {n} {noun}.",
                               f"What {plural(phrase)} have more than {n} {noun}?"])  # fmt: skip
        return question, (f"SELECT {col.name} FROM {t.name} GROUP BY {col.name} "
                          f"HAVING COUNT(*) > {n}")  # fmt: skip
    question = rng.choice([f"Which {phrase} has the most {noun}?",
                           f"What {phrase} do most {noun} have?",
                           f"Which {phrase} is the most common among {noun}?"])  # fmt: skip
    return question, (f"SELECT {col.name} FROM {t.name} GROUP BY {col.name} "
                      "ORDER BY COUNT(*) DESC LIMIT 1")  # fmt: skip


def two_columns(t: Table, rng: random.Random) -> tuple[str, str]:
    target = rng.choice(t.cols)
    conds = _conds(t, rng, most=1, exclude=(target,))
    what = noun_phrase(t, conds, rng)
    label, phrase = t.label.phrase(rng), target.phrase(rng)
    question = rng.choice([f"Show the {plural(label)} and {plural(phrase)} of {what}.",
                           f"What are the {plural(label)} and {plural(phrase)} of the {what}?",
                           f"Give the {label} and {phrase} of all {what}."]
                          + ([f"List each {t.noun(rng, False)}'s {label} and {phrase}."]
                             if not conds else []))  # fmt: skip
    return question, f"SELECT {t.select_label()}, {target.name} FROM {t.name}{where(conds)}"


SHAPES: list[tuple[float, Callable[[Table, random.Random], tuple[str, str]]]] = [
    (0.16, list_rows),
    (0.14, lookup),
    (0.15, count_rows),
    (0.14, aggregate),
    (0.13, superlative),
    (0.08, compare),
    (0.04, either),
    (0.06, distinct),
    (0.06, grouped),
    (0.04, two_columns),
]


def joined(rng: random.Random) -> tuple[str, str, str]:
    """Two tables a key joins: "Which wines come from wineries in Chile?"."""
    one_name, many_name = rng.choice(lx.LINKS)
    one = make_table(_BY_NAME[one_name], rng)
    many = make_table(_BY_NAME[many_name], rng)
    key = one.key or Col(f"{one.entity.singular.replace(' ', '_')}_id", None, True, "key")
    one.key = key
    many.foreign = Col(key.name, None, True, "key")
    first, second = (many, one) if rng.random() < 0.6 else (one, many)
    context = f"{first.context()}; {second.context()}"
    alias = {id(first): "T1.", id(second): "T2."}
    source = (f"FROM {first.name} AS T1 JOIN {second.name} AS T2 "
              f"ON T1.{key.name} = T2.{key.name}")  # fmt: skip
    m, o = alias[id(many)], alias[id(one)]
    roll = rng.random()
    if roll < 0.4:  # rows of `many` whose `one` has a property
        cond = condition(one, rng, alias=o)
        owner = noun_phrase(one, [cond], rng, many=rng.random() < 0.5)
        things = many.noun(rng)
        question = rng.choice([f"Which {things} belong to {owner}?",
                               f"List the {things} of {owner}.",
                               f"Show the {many.label.phrase(rng)}s of {things} of {owner}.",
                               f"What {things} are linked to {owner}?"])  # fmt: skip
        return question, context, f"SELECT {many.select_label(m)} {source} WHERE {cond.sql}"
    if roll < 0.65:  # how many `many` a named `one` has
        name = one.label.value(rng)
        things = many.noun(rng)
        question = rng.choice([f"How many {things} does {name} have?",
                               f"How many {things} belong to {name}?",
                               f"Count the {things} of {name}."])  # fmt: skip
        return question, context, f"SELECT COUNT(*) {source} WHERE {one.where_label(str(name), o)}"
    if roll < 0.85:  # a property of the `one` a named `many` row belongs to
        target = rng.choice([*one.cols, one.label])
        name = many.label.value(rng)
        owner = one.noun(rng, many=False)
        question = rng.choice([f"What is the {target.phrase(rng)} of the {owner} of {name}?",
                               f"Which {owner} does {name} belong to?"
                               if target is one.label else
                               f"Tell me the {target.phrase(rng)} of {name}'s {owner}."]
                              )  # fmt: skip
        return question, context, (f"SELECT {o}{target.name} {source} "
                                   f"WHERE {many.where_label(str(name), m)}")  # fmt: skip
    # the `one` with the most `many`
    owner, things = one.noun(rng, many=False), many.noun(rng)
    question = rng.choice([f"Which {owner} has the most {things}?",
                           f"Name the {owner} with the largest number of {things}."])  # fmt: skip
    return question, context, (f"SELECT {one.select_label(o)} {source} GROUP BY {o}{key.name} "
                               "ORDER BY COUNT(*) DESC LIMIT 1")  # fmt: skip


def generate_row(rng: random.Random, join_share: float = 0.1) -> dict[str, str]:
    """One everyday row."""
    if rng.random() < join_share:
        question, context, answer = joined(rng)
    else:
        table = make_table(rng.choice(ENTITIES), rng)
        [shape] = rng.choices([s for _, s in SHAPES], weights=[w for w, _ in SHAPES])
        question, answer = shape(table, rng)
        context = table.context()
    question = " ".join(question.split())
    if rng.random() < 0.85:
        question = _cap(question)
    return {"question": wrap(question, rng), "context": context, "answer": answer}
