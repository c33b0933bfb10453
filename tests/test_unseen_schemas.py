"""The synthetic generator's vocabulary and the set of unseen schemas (part of the validation
set): its tables are none the generator makes, and its names and values none of the random
schemas' vocabulary, or it would measure memory, not skill. (Everyday words, "name", "age",
"yes", are the language of everyday tables, which the generator's everyday rows speak too.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

import pytest
import sqlglot
from sqlglot import exp

from tunekit import lexicon
from tunekit import vocabulary as vocab
from tunekit.eval_sets import STYLE, UNSEEN_FILE, validation_rows
from tunekit.evaluate import check_row
from tunekit.server_requests import TUTORIAL
from tunekit.synthetic import generate

from .conftest import REPO


def words(row: dict[str, str]) -> set[str]:
    """Every word of a row's names and values: its tables, columns and string literals, split
    at underscores, spaces and dashes (numbers left out: any row may hold any number)."""
    names: set[str] = set()
    for sql in [*row["context"].split(";"), row["answer"]]:
        tree = sqlglot.parse_one(sql, read="sqlite")
        names |= {t.name for t in tree.find_all(exp.Table)}
        names |= {c.name for c in tree.find_all(exp.Column)}
        names |= {d.name for d in tree.find_all(exp.ColumnDef)}
        names |= {s.this for s in tree.find_all(exp.Literal) if s.is_string}
    # `table_name_<N>`, the public dataset's placeholder name, is one name, not three words
    found = {
        w
        for name in names
        for w in (
            [name] if re.fullmatch(r"table_name_\d+", name) else re.split(r"[_\s-]+", name.lower())
        )
    }
    return {w for w in found if w and not re.fullmatch(r"[a-z]?\d+(\.\d+)*", w)}


def vocabulary_words() -> set[str]:
    lists = (vocab.TABLES, vocab.TEXT_NOUNS, vocab.NUMERIC_NOUNS, vocab.MODIFIERS,
             vocab.FIRST_NAMES, vocab.LAST_NAMES, vocab.PLACES, vocab.THINGS,
             vocab.MADE_UP, vocab.WORDS)  # fmt: skip
    return {w for names in lists for name in names for w in re.split(r"[_\s-]+", name) if w}


def unseen_rows() -> list[dict[str, str]]:
    return [r for r in validation_rows() if r[STYLE] == "unseen-schema"]


@pytest.fixture(scope="module")
def unseen() -> list[dict[str, str]]:
    return unseen_rows()


def test_the_unseen_set_shares_no_word_with_the_generators_vocabulary(unseen):
    shared = {w for row in unseen for w in words(row)} & vocabulary_words()
    assert not shared, f"the unseen set uses the generator's words: {sorted(shared)}"


def test_no_table_of_the_unseen_set_is_one_the_generator_makes(unseen):
    """What the generator makes, not only what its lists hold: 40,000 rows of four seeds (the
    default 14,000 of seed 42 among them): none of the set's tables, and of the set's names
    and values no word of the rows on random schemas."""
    made = [r for seed in (0, 7, 2024) for r in generate(10_000, seed)] + generate(14_000, 42)
    tables = {t for r in unseen for t in _tables(r)}
    assert not tables & {t for r in made for t in _tables(r)}
    schemas = [
        r for r in made if not _tables(r) & EVERYDAY_TABLES and "table_name_" not in r["context"]
    ]
    shared = {w for row in unseen for w in words(row)} & {w for r in schemas for w in words(r)}
    assert not shared, f"generated rows hold words of the unseen set: {sorted(shared)}"


def _tables(row: dict[str, str]) -> set[str]:
    return set(re.findall(r"CREATE TABLE (\w+)", row["context"]))


EVERYDAY_TABLES = {name for e in lexicon.ENTITIES for name in e.table_names}


def test_the_overlap_check_sees_a_shared_word():
    """The check above can fail: a row of the generator's own words is caught."""
    row = generate(1, seed=5)[0]
    assert words(row) & vocabulary_words()
    assert words(TUTORIAL) == {"attendees", "name", "age", "kubecon", "eu"}


def test_the_unseen_set_is_judgeable_and_starts_with_the_tutorials_question(unseen):
    assert len(unseen) >= 100
    assert {k: unseen[0][k] for k in TUTORIAL} == TUTORIAL
    assert [(i, reason) for i, row in enumerate(unseen) if (reason := check_row(row))] == []
    tables = Counter(sqlglot.parse_one(r["context"]).find(exp.Table).name for r in unseen)
    assert len(tables) >= 10 and max(tables.values()) <= 0.15 * len(unseen)


def test_the_committed_set_is_what_its_tool_makes(tmp_path):
    """tools/make_unseen_set.py wrote the shipped file; nobody edited it by hand since."""
    made = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_unseen_set.py"), "--output", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert (tmp_path / UNSEEN_FILE.name).read_text() == UNSEEN_FILE.read_text(), made.stdout
    assert all(json.loads(line) for line in UNSEEN_FILE.read_text().splitlines())


def test_the_committed_word_list_is_what_its_tool_makes(tmp_path):
    """tools/make_word_list.py wrote words.txt (English words, the unseen set's held out)."""
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_word_list.py"), "--output", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert (tmp_path / vocab.WORDS_FILE.name).read_text() == vocab.WORDS_FILE.read_text()
    assert len(vocab.WORDS) == 10_000


def test_the_generator_draws_names_from_a_large_vocabulary():
    """So that a model must copy names from the context: few rows share a table or a column."""
    rows = generate(5000, seed=42)
    tables = Counter(sqlglot.parse_one(r["context"].split(";")[0]).find(exp.Table).name
                     for r in rows)  # fmt: skip
    columns = Counter(d.name for r in rows for d in sqlglot.parse_one(
        r["context"].split(";")[0]).find_all(exp.ColumnDef))  # fmt: skip
    assert len(tables) > 700 and tables.most_common(1)[0][1] < 0.02 * len(rows)
    assert len(columns) > 5000
    assert sum(name.startswith("table_name_") for name in tables.elements()) > 0.3 * len(rows)
    # contexts that list a column the query does not use: the question decides which to take
    spare = sum(
        any(d.name not in r["answer"] for d in sqlglot.parse_one(r["context"]).find_all(
            exp.ColumnDef)) for r in rows if ";" not in r["context"]
    )  # fmt: skip
    assert 0.5 * len(rows) < spare < 0.9 * len(rows)
