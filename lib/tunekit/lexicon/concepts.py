"""The concept table: every concept by its key, in the order seeded draws depend on (text
concepts, then measures, then amounts)."""

from __future__ import annotations

from tunekit.lexicon.concept import Concept
from tunekit.lexicon.concepts_amounts import AMOUNT_CONCEPTS
from tunekit.lexicon.concepts_measures import MEASURE_CONCEPTS
from tunekit.lexicon.concepts_text import TEXT_CONCEPTS

CONCEPTS: dict[str, Concept] = {
    c.key: c for c in (*TEXT_CONCEPTS, *MEASURE_CONCEPTS, *AMOUNT_CONCEPTS)
}
