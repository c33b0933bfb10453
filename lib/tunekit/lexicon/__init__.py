"""What the generator knows of how people ask about tables: column concepts and entities.

A question rarely says `year_built`: it says "built before 1900", "the newest", "When was ...
built?". A `Concept` is one kind of column (an age, a price, a country, an owner) with the
names a table gives it, the words a question uses for it, the values it holds, and the phrases
that name it only by implication: a wh-word ("Who", "When", "Where", "How old"), a superlative
("the oldest"), a comparison ("older than 30"), a value in a preposition ("from Peru", "in
Paris", "directed by Ana Silva") or a value used as an adjective ("red cars").

An `Entity` is a kind of table people keep (castles, wines, podcasts): its names, the column
that names a row, and the concepts its columns may be. `LINKS` are pairs of entities a foreign
key joins. `WIKI_TABLES` are column sets of the kind the public dataset's WikiSQL rows have
(sports results, charts, lists), in domains of their own.

These are the kit's own words, written from general knowledge of how tables and questions look;
the hand-written evaluation sets (`tunekit.eval_sets`) are about other domains, and no question
of the test set is a sentence the generator makes (tests/test_eval_sets.py).

The package: `words` (the values), `concept` (the `Concept` and its helpers), `concepts` (the
concept table, written in `concepts_text`, `concepts_measures` and `concepts_amounts`),
`entities` (`ENTITIES`, `LINKS`) and `wiki_tables` (`WIKI_TABLES`).
"""

from __future__ import annotations

from tunekit.lexicon.concept import COUNTED, FLAGGED, Concept, counted, flagged
from tunekit.lexicon.concepts import CONCEPTS
from tunekit.lexicon.concepts_measures import YEAR_WORDS
from tunekit.lexicon.entities import ENTITIES, LINKS, Entity
from tunekit.lexicon.wiki_tables import WIKI_TABLES
from tunekit.lexicon.words import (
    CITIES,
    COLORS,
    COUNTRIES,
    DAYS,
    FIRST,
    GENDERS,
    LANGUAGES,
    LAST,
    LEVELS,
    MONTHS,
    ORG_KINDS,
    ORG_WORDS,
    REGIONS,
    SHAPES,
    SIZES,
    SPECIES,
    STATUSES,
    TITLE_WORDS,
    TYPES,
)

__all__ = [
    "CITIES",
    "COLORS",
    "CONCEPTS",
    "COUNTED",
    "COUNTRIES",
    "DAYS",
    "ENTITIES",
    "FIRST",
    "FLAGGED",
    "GENDERS",
    "LANGUAGES",
    "LAST",
    "LEVELS",
    "LINKS",
    "MONTHS",
    "ORG_KINDS",
    "ORG_WORDS",
    "REGIONS",
    "SHAPES",
    "SIZES",
    "SPECIES",
    "STATUSES",
    "TITLE_WORDS",
    "TYPES",
    "WIKI_TABLES",
    "YEAR_WORDS",
    "Concept",
    "Entity",
    "counted",
    "flagged",
]
