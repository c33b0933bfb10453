"""Generated rows that ask about everyday tables the way people do (`tunekit.synthetic` mixes
them in): "Who is the oldest journalist?", "How many wines come from Chile?", "For each city,
how many parks are there?".

A table is made from an `Entity` of `tunekit.lexicon` (its naming column, a few of its concepts,
often an id); a question names a column by one of its phrases or only implies it (a wh-word, a
superlative, a comparison, a value after a preposition or before the noun). Each SQL shape has
many phrasings, so that the model learns the shape, not a sentence. The tables, their columns'
values and the phrases of conditions are in `tunekit.everyday_tables`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tunekit import lexicon as lx
from tunekit.everyday_tables import (
    Col,
    Cond,
    Table,
    compare_phrase,
    condition,
    make_table,
    noun_phrase,
    plural,
    where,
)
from tunekit.lexicon import ENTITIES
from tunekit.phrasing import wrap

_BY_NAME = {e.singular: e for e in ENTITIES}


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
