"""A `Concept`, one kind of column, and the helpers that write one: a person, a number, a text
with its values, a count of things the row has (`counted`) or a yes/no flag (`flagged`)."""

from __future__ import annotations

from dataclasses import dataclass

from tunekit.lexicon.words import lines, w


@dataclass(frozen=True)
class Concept:
    """One kind of column: its names, how questions say it, its values, and what implies it."""

    key: str
    names: tuple[str, ...]  # column names a table gives it
    phrases: tuple[str, ...]  # how a question names it ("year built")
    numeric: bool = False
    values: tuple[str, ...] = ()  # text values; numeric ones come from `low`..`high`
    low: int = 0
    high: int = 100
    asked: tuple[str, ...] = ()  # how a question asks for it unnamed: "Who", "When", "How old"
    said: tuple[str, ...] = ()  # a value in a phrase after the entity noun: "from {v}"
    adjective: bool = False  # its value reads before the noun: "red cars", "premium members"
    more: tuple[str, ...] = ()  # the superlative of the largest value: "oldest"
    less: tuple[str, ...] = ()  # of the smallest: "youngest"
    above: tuple[str, ...] = ()  # "older than {v}"
    below: tuple[str, ...] = ()  # "younger than {v}"
    person: bool = False  # holds people's names ("Who ...?")
    noun: bool = False  # its value can be the question's noun ("How many owls ...?")
    verb: tuple[str, ...] = ()  # "Who {verb} X?": "owns", "directed"; its passive: `said`


def person(key: str, names: str, phrases: str, verb: str = "", said: str = "") -> Concept:
    return Concept(
        key,
        w(names),
        lines(phrases),
        values=(),
        asked=("Who",),
        person=True,
        verb=lines(verb),
        said=lines(said),
    )


def number(key: str, names: str, phrases: str, low: int, high: int, **words: str) -> Concept:
    """A numeric concept; `words` are its lists (one per line): more, less, above, below,
    asked, said."""
    return Concept(
        key, w(names), lines(phrases), True, (), low, high,
        **{k: lines(v) for k, v in words.items()},  # type: ignore[arg-type]
    )  # fmt: skip


def text(key: str, names: str, phrases: str, values: tuple[str, ...], **words: object) -> Concept:
    lists = {k: lines(v) for k, v in words.items() if isinstance(v, str)}
    flags = {k: v for k, v in words.items() if isinstance(v, bool)}
    return Concept(key, w(names), lines(phrases), False, values, **lists, **flags)  # type: ignore[arg-type]


COUNTED = w("""
    wheels doors stops branches exhibits tracks chapters stores screens lanes towers bells
    windows gates courts pools stages awards titles wins trophies shops beds cabins engines
""")
FLAGGED = w("pool parking wifi garden garage balcony elevator lift terrace sauna")


def counted(noun: str) -> Concept:
    """A column that counts something the row has: `num_doors`, "How many doors ...?"."""
    return Concept(
        f"count:{noun}",
        (f"num_{noun}", noun, f"{noun}_count", f"number_of_{noun}"),
        (noun, f"number of {noun}"),
        numeric=True,
        low=1,
        high=60,
        asked=(f"How many {noun}",),
        more=(f"most {noun}",),
        less=(f"fewest {noun}",),
        above=(f"with more than {{v}} {noun}", f"with over {{v}} {noun}"),
        below=(f"with fewer than {{v}} {noun}", f"with under {{v}} {noun}"),
    )


def flagged(noun: str) -> Concept:
    """A yes/no column: `has_pool` holds "yes" or "no" ("with a pool")."""
    return Concept(
        f"has:{noun}",
        (f"has_{noun}", noun, f"{noun}_available"),
        (f"has {noun}", noun),
        values=("yes", "no"),
    )
