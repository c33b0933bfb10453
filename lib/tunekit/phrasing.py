"""How people wrap a question: the same request asked, told or typed in a hurry.

The generator's rows pass through `wrap`, so that a model learns what a question asks from
its content words, not from the first words of a few sentence frames.
"""

from __future__ import annotations

import random

PREFIXES = (
    "Can you tell me", "Could you tell me", "I'd like to know", "I want to know", "Tell me",
    "Do you know", "Please tell me", "Quick question:", "Help me find out", "I wonder",
)  # fmt: skip
ASKING = ("What", "Which", "Who", "How", "When", "Where", "In", "On", "For", "Of")


def wrap(question: str, rng: random.Random) -> str:
    """`question` as people type it: now and then behind "Can you tell me", with "please",
    without its question mark."""
    roll = rng.random()
    if roll < 0.12 and question.split(" ", 1)[0] in ASKING:
        body = question[0].lower() + question[1:]
        question = f"{rng.choice(PREFIXES)} {body}"
    elif roll < 0.17:
        question = question.rstrip("?") + rng.choice((", please?", " please", ", please."))
    if rng.random() < 0.15:
        question = question.rstrip("?")  # a final "." may end a value ("Jr.")
    return question
