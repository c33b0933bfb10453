"""The evaluation sets: what chooses reads validation data only, the test set is written the way
people ask and none of its questions is a sentence the generator makes, every gold answer of
every set is judgeable and is a sentence of the grammar that constrains the model."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

from tunekit import eval_sets, objective
from tunekit.evaluate import check_row
from tunekit.grammar import accepts, sql_grammar
from tunekit.synthetic import generate

from .conftest import REPO

# What chooses: stage 04's ranking, a sweep (Optuna, Katib), the recipe search
CHOOSERS = (
    REPO / "lib" / "tunekit" / "objective.py",
    REPO / "lib" / "tunekit" / "registry.py",
    REPO / "lib" / "tunekit" / "sweep.py",
    REPO / "lib" / "tunekit" / "reproduce.py",
    REPO / "lib" / "tunekit" / "backends" / "gke" / "katib.py",  # Katib's objective
    REPO / "bench" / "recipe_search.py",
)
_CREATE = re.compile(r"CREATE TABLE (\w+) \(([^)]*)\)")


@pytest.fixture(scope="module")
def test_set() -> list[dict[str, str]]:
    return eval_sets.test_rows()


@pytest.fixture(scope="module")
def validation() -> list[dict[str, str]]:
    return eval_sets.validation_rows()


@pytest.fixture(scope="module")
def generated() -> list[dict[str, str]]:
    """What the generator makes: the default 14,000 rows of seed 42 and 10,000 of three more."""
    return [r for seed in (0, 7, 2024) for r in generate(10_000, seed)] + generate(14_000, 42)


@pytest.fixture(scope="module")
def made(generated) -> set[str]:
    """The generated rows' sentences, names and values set aside."""
    return {skeleton(r) for r in generated}


def test_the_sets_and_their_styles(test_set, validation) -> None:
    assert len(test_set) >= 150
    assert Counter(r["style"] for r in test_set) == {"everyday": 90, "wikisql": 90}
    assert Counter(r["style"] for r in validation) == {
        "unseen-schema": 104, "everyday": 55, "wikisql": 55,
    }  # fmt: skip
    for row in test_set + validation:
        if row["style"] == "wikisql":  # the public data's conventions
            assert re.fullmatch(
                r"CREATE TABLE table_name_\d+ \((\w+ VARCHAR(, )?)+\)", row["context"]
            )
            literals = re.findall(r'"([^"]*)"', row["answer"])
            assert all(v == v.lower() for v in literals), row


def test_no_table_of_the_test_set_is_one_of_the_validation_set(test_set, validation) -> None:
    def tables(rows: list[dict]) -> set[tuple[str, str]]:
        return {m.groups() for r in rows for m in _CREATE.finditer(r["context"])}

    assert not tables(test_set) & tables(validation)


def test_every_gold_answer_is_judgeable_and_a_sentence_of_its_grammar(test_set, validation) -> None:
    """Constrained decoding can only be right where the grammar admits the right answer."""
    rows = test_set + validation + generate(500, seed=3)
    assert [(r["question"], why) for r in rows if (why := check_row(r))] == []
    refused = [
        r["answer"]
        for r in rows
        if not accepts(sql_grammar(r["question"], r["context"]), r["answer"])
    ]
    assert refused == []


def skeleton(row: dict[str, str]) -> str:
    """A question with its names and values as placeholders: every table and column name of
    its context (as written, with spaces for underscores, each word of it, plurals too) is
    `<n>`, every literal of its answer and number of the question `<v>`; lower-cased."""
    names: set[str] = set()
    for table, body in _CREATE.findall(row["context"]):
        for name in [table, *(c.split()[0] for c in body.split(",") if c.strip())]:
            names |= {name, name.replace("_", " ")} | set(name.split("_"))
    values = set(re.findall(r'"([^"]*)"', row["answer"]))
    question = row["question"].lower()
    for value in sorted(values, key=len, reverse=True):
        if value:
            question = question.replace(value.lower(), " <v> ")
    question = re.sub(r"-?\d[\d,.:]*", " <v> ", question)
    for name in sorted((n.lower() for n in names if len(n) > 1), key=len, reverse=True):
        question = re.sub(rf"\b{re.escape(name)}(s|es)?\b", " <n> ", question)
    question = re.sub(r"[^\w<>' ]+", " ", question)
    question = re.sub(r"(<[nv]>\s*)+", lambda m: m.group(0).split()[0] + " ", question)
    return " ".join(question.split())


def test_no_test_question_is_a_sentence_the_generator_makes(test_set, made) -> None:
    """Names and values set aside, the sentences compared whole: the test set measures how
    the model reads questions it was not taught, not how it copies names into known ones."""
    shared = sorted({skeleton(r) for r in test_set} & made)
    assert not shared, f"{len(shared)} test questions are generated sentences: {shared[:10]}"


def test_the_sentence_check_catches_a_generated_sentence(generated, made) -> None:
    """The check above can fail: a generated row asked about other tables and values has the
    same skeleton, and a row with one word changed has another."""
    row = next(r for r in generated if r["context"].startswith("CREATE TABLE table_name_"))
    renamed = {
        "question": row["question"],
        "context": row["context"].replace("table_name_", "table_name_9"),
        "answer": row["answer"].replace("table_name_", "table_name_9"),
    }
    assert skeleton(renamed) == skeleton(row) and skeleton(row) in made
    reworded = {**row, "question": "Pray tell, " + row["question"]}
    assert skeleton(reworded) != skeleton(row)
    ship = {"question": "How many ships sail under the flag of Peru?",
            "context": "CREATE TABLE ship (ship_id INTEGER, name VARCHAR, flag VARCHAR)",
            "answer": 'SELECT COUNT(*) FROM ship WHERE flag = "Peru"'}  # fmt: skip
    assert skeleton(ship) == "how many <n> sail under the <n> of <v>"


def _reads_the_test_set(path: Path) -> list[str]:
    """What in `path` names the test set: `test_rows`, `eval_sets.TEST`, a `test_` metric."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name | ast.Attribute | ast.alias):
            name = {ast.Name: "id", ast.Attribute: "attr", ast.alias: "name"}[type(node)]
            name = getattr(node, name)
            if name in ("test_rows", "TEST"):
                found.append(f"{path.name}:{getattr(node, 'lineno', '?')} {name}")
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and (
            text == eval_sets.TEST or text.startswith(eval_sets.prefix(eval_sets.TEST))
        ):
            found.append(f"{path.name}:{node.lineno} {text!r}")
    return found


def test_nothing_that_chooses_reads_the_test_set() -> None:
    """Stage 04's ranking, sweeps (Optuna, Katib's objective), reproduce's comparison and the
    recipe search name neither the test set nor a metric on it; the kit reads the test set in
    one place only, the fine-tune's report (train.evaluate)."""
    assert all(path.is_file() for path in CHOOSERS), [p for p in CHOOSERS if not p.is_file()]
    assert [hit for path in CHOOSERS for hit in _reads_the_test_set(path)] == []
    readers = {
        str(path.relative_to(REPO))
        for path in (REPO / "lib").rglob("*.py")
        if any("test_rows" in hit for hit in _reads_the_test_set(path))
    }
    assert readers == {"lib/tunekit/train.py"}


def test_the_check_sees_a_chooser_that_reads_the_test_set(tmp_path: Path) -> None:
    sneaky = tmp_path / "objective.py"
    sneaky.write_text('COMPONENTS = ("tuned_execution_accuracy", "test_tuned_execution_accuracy")\n'
                      "from tunekit.eval_sets import test_rows\n")  # fmt: skip
    assert len(_reads_the_test_set(sneaky)) == 2


def test_the_score_and_the_ranking_ignore_test_metrics() -> None:
    """Two runs: A better on validation, B far better on the test set. A ranks first, and B's
    test numbers change neither score."""
    a = {"tuned_execution_accuracy": 0.9, "validation_tuned_execution_accuracy": 0.6,
         "test_tuned_execution_accuracy": 0.1, "eval_loss": 1.0}  # fmt: skip
    b = {"tuned_execution_accuracy": 0.9, "validation_tuned_execution_accuracy": 0.5,
         "test_tuned_execution_accuracy": 0.99, "eval_loss": 0.1}  # fmt: skip
    assert objective.best_first([b, a]) == [a, b]
    assert objective.score(b) == objective.score({**b, "test_tuned_execution_accuracy": 0.0})
    assert not any(c.startswith("test_") for c in objective.COMPONENTS)
