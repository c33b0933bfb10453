"""Make `lib/tunekit/words.txt`: English words the synthetic generator draws names and values
from (`tunekit.vocabulary.WORDS`), none of them a word of the unseen-schema set, nor sharing
its first five letters with one (no "attendee" beside the set's "attendees").

The words are a seeded sample of Webster's Second International (1934, public domain), as the
`english-words` package (MIT) ships it. The list is committed; run this only to change it,
after tools/make_unseen_set.py:

    .venv/bin/pip install english-words==2.0.2 && .venv/bin/python tools/make_word_list.py
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from tunekit.eval_sets import UNSEEN_FILE
from tunekit.vocabulary import WORDS_FILE

COUNT = 10_000
SEED = 7
HEADER = "# Webster's Second International (public domain) via english-words 2.0.2: a sample, "
HEADER += "made by tools/make_word_list.py\n"


def held_out() -> set[str]:
    """Every word of the unseen-schema set's questions, tables, columns and values."""
    rows = [json.loads(line) for line in UNSEEN_FILE.read_text().splitlines() if line.strip()]
    text = " ".join(f"{r['question']} {r['context']} {r['answer']}" for r in rows)
    return set(re.findall(r"[a-z]+", text.lower()))


def close(word: str, others: set[str]) -> bool:
    return word in others or any(
        len(other) >= 5 and len(word) >= 5 and word[:5] == other[:5] for other in others
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=WORDS_FILE.parent, help="a folder")
    target = parser.parse_args().output / WORDS_FILE.name
    from english_words import get_english_words_set

    words = sorted(
        w for w in get_english_words_set(["web2"], alpha=True, lower=True)
        if w.isascii() and 4 <= len(w) <= 10
    )  # fmt: skip
    unseen = held_out()
    kept = [w for w in words if not close(w, unseen)]
    sample = sorted(random.Random(SEED).sample(kept, COUNT))
    target.write_text(HEADER + "".join(f"{w}\n" for w in sample))
    print(f"{len(sample)} of {len(words)} words ({len(words) - len(kept)} held out) -> {target}")


if __name__ == "__main__":
    main()
