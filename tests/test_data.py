"""Datasets: every source, bad rows, the split, the prompt template and the synthetic generator."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tunekit.data import MAX_ROW_BYTES, DataError, read_rows, split_rows
from tunekit.evaluate import check_row
from tunekit.prompts import build_example, build_prompt
from tunekit.settings import Settings
from tunekit.splits import check_file_rows, load_splits
from tunekit.synthetic import generate

ROWS = [
    {
        "question": "How many heads of the departments are older than 56 ?",
        "context": "CREATE TABLE head (age INTEGER)",
        "answer": "SELECT COUNT(*) FROM head WHERE age > 56",
    },
    {
        "question": "What is the venue when the opponent is utah jazz?",
        "context": "CREATE TABLE game (venue VARCHAR, opponent VARCHAR)",
        "answer": 'SELECT venue FROM game WHERE opponent = "utah jazz"',
    },
]


def write(path: Path, rows: list) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_reads_each_file_format(tmp_path: Path, suffix: str) -> None:
    extra = [{**r, "id": i} for i, r in enumerate(ROWS)]  # unknown columns are dropped
    assert read_rows(str(write(tmp_path / f"rows{suffix}", extra))) == ROWS


def test_reads_a_hugging_face_dataset_folder(tmp_path: Path) -> None:
    """A Hub id and a local dataset folder go through the same `datasets.load_dataset` path."""
    folder = tmp_path / "sql-create-context"
    folder.mkdir()
    write(folder / "train.jsonl", ROWS)
    assert read_rows(str(folder)) == ROWS


def test_unreachable_hub_dataset_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot load dataset 'nobody/no-such-dataset'"):
        read_rows("nobody/no-such-dataset")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "q", "context": "c"}, "row 1: field 'answer' is missing"),
        ({"question": "q", "context": 3, "answer": "a"}, "row 1: field 'context' must be a string"),
        ({"question": " ", "context": "c", "answer": "a"}, "row 1: field 'question' is empty"),
        ({"question": None, "context": "c", "answer": "a"}, "row 1: field 'question' must be"),
        (["q", "c", "a"], "row 1 is a list, expected an object"),
    ],
)
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_bad_rows_name_the_row_and_the_field(
    tmp_path: Path, row: object, message: str, suffix: str
) -> None:
    path = write(tmp_path / f"rows{suffix}", [ROWS[0], row])
    with pytest.raises(DataError, match=re.escape(message)):
        read_rows(str(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "q"}', "expected a JSON array of rows, got dict"),
        ("[", "not valid JSON"),
        ("[]", "no rows"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rows.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_rows(str(path))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_rows(str(tmp_path / "nope.jsonl"))


def test_split_is_deterministic_disjoint_and_complete() -> None:
    rows = generate(300, seed=1)
    train, held_out = split_rows(rows, 50, seed=4)
    assert (train, held_out) == split_rows(rows, 50, seed=4)
    assert len(held_out) == 50 and len(train) == 250
    assert sorted(map(str, train + held_out)) == sorted(map(str, rows))
    assert split_rows(rows, 50, seed=5)[1] != held_out
    with pytest.raises(DataError, match="eval_size=300"):
        split_rows(rows, 300, seed=4)


def test_settings_choose_rows_limit_and_split() -> None:
    settings = Settings(dataset="synthetic", synthetic_rows=500, dataset_limit=120, eval_size=20)
    train, held_out = load_splits(settings)
    assert (len(train), len(held_out)) == (100, 20)


def test_prompt_template_is_shared_and_the_completion_ends_with_eos() -> None:
    example = build_example(ROWS[1], eos_token="<eos>")
    assert example["prompt"] == build_prompt(ROWS[1]["question"], ROWS[1]["context"])
    assert ROWS[1]["question"] in example["prompt"] and ROWS[1]["context"] in example["prompt"]
    assert example["completion"] == " " + ROWS[1]["answer"] + "<eos>"  # after "Answer:"


def test_synthetic_rows_are_seeded() -> None:
    assert generate(50, seed=3) == generate(50, seed=3)
    assert generate(50, seed=3) != generate(50, seed=4)


def test_every_synthetic_answer_executes_against_its_own_context() -> None:
    for row in generate(2000, seed=11):
        db = sqlite3.connect(":memory:")
        db.executescript(row["context"])
        db.execute(row["answer"]).fetchall()  # raises on any broken answer
        db.close()


def test_synthetic_mix_is_varied_like_the_public_dataset() -> None:
    rows = generate(2000, seed=0)
    answers = [r["answer"] for r in rows]
    kinds = Counter()
    for a in answers:
        for marker in ("COUNT(", "MIN(", "MAX(", "AVG(", "SUM(", " AND ", "ORDER BY", "LIMIT"):
            kinds[marker] += marker in a
        kinds["JOIN"] += " JOIN " in a
        kinds["string literal"] += '"' in a
        kinds["comparison"] += bool(re.search(r" [<>] \d", a))
        kinds["three conditions"] += a.count(" AND ") - a.count(" ON ") >= 2
    assert all(kinds[k] >= 20 for k in kinds), kinds
    assert len(set(answers)) > 0.9 * len(answers)


@pytest.mark.parametrize(
    ("suffix", "content", "message"),
    [
        (".json", b'[{"question": "caf\xe9"}]', "not UTF-8 text (at byte 18"),
        (".jsonl", b'{"question": "q"}\n\n{"question": "caf\xe9"}\n', "line 3 is not UTF-8 text"),
        (".jsonl", b'{"question": "q"}\n\n{"question": \n', "line 3 is not valid JSON"),
        (".parquet", b"PAR1 this is no parquet file", "not a readable parquet file"),
    ],
)
def test_unreadable_files_are_data_errors_naming_the_file(
    tmp_path: Path, suffix: str, content: bytes, message: str
) -> None:
    path = tmp_path / f"rows{suffix}"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(f"{path}: {message}")):
        read_rows(str(path))


def test_a_jsonl_row_may_hold_a_line_separator_inside_a_string(tmp_path: Path) -> None:
    row = {**ROWS[0], "question": "How many heads\u2028are older than 56?"}
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_rows(str(path)) == [row]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_a_row_over_the_size_cap_is_a_data_error(tmp_path: Path, suffix: str) -> None:
    big = {**ROWS[1], "context": ROWS[1]["context"] + " " * MAX_ROW_BYTES}
    size = sum(len(v.encode()) for v in big.values())
    path = write(tmp_path / f"rows{suffix}", [ROWS[0], big])
    with pytest.raises(
        DataError, match=f"row 1 is {size:,} bytes, more than the {MAX_ROW_BYTES:,}"
    ):
        read_rows(str(path))


BROKEN = [
    ({"answer": "SELECT venue FROM WHERE"}, "field 'answer' does not parse"),
    (
        {"context": "CREATE TABLE game (venue VARCHAR)", "answer": "SELECT score FROM game"},
        "field 'answer' failed on SQLite: no such column: score",
    ),
    ({"context": "CREATE TABLE game (venue VARCHAR"}, "field 'context' does not parse"),
]


@pytest.mark.parametrize(("change", "message"), BROKEN)
def test_held_out_rows_that_cannot_be_judged_stop_the_run_at_the_start(
    tmp_path: Path, change: dict, message: str
) -> None:
    rows = generate(40, seed=2)
    settings = Settings(dataset=str(tmp_path / "rows.jsonl"), eval_size=10, seed=3)
    _, held_out = split_rows(rows, settings.eval_size, settings.seed)
    bad = rows.index(held_out[4])
    rows[bad] = {**rows[bad], **change}
    write(tmp_path / "rows.jsonl", rows)
    for check in (check_file_rows, load_splits):
        with pytest.raises(DataError, match=re.escape(f"row {bad}: {message}")):
            check(settings)


def test_broken_training_rows_do_not_stop_the_run(tmp_path: Path) -> None:
    """Only the held-out rows are run on SQLite (a training row's answer is only taught)."""
    rows = generate(40, seed=2)
    train, _ = split_rows(rows, 10, seed=3)
    bad = rows.index(train[0])
    rows[bad] = {**rows[bad], "answer": "SELECT venue FROM WHERE"}
    settings = Settings(dataset=str(write(tmp_path / "rows.jsonl", rows)), eval_size=10, seed=3)
    check_file_rows(settings)
    assert len(load_splits(settings)[1]) == 10


def test_every_synthetic_row_passes_the_held_out_check_quickly() -> None:
    rows = generate(3000, seed=8)
    started = time.monotonic()
    assert [(i, r) for i, r in enumerate(rows) if check_row(r)] == []
    assert time.monotonic() - started < 15


def test_a_file_dataset_is_recorded_as_a_local_source(tmp_path):
    """The fine-tune's MLflow inputs name the file (this failed with an ImportError: MLflow
    3.17 registers its artifact dataset sources, it does not export them)."""
    from tunekit.mlflow_record import dataset_source
    from tunekit.settings import load_settings

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"question": "q", "context": "c", "answer": "a"}\n')
    source = dataset_source(load_settings(dataset=str(rows)))
    assert source.to_dict() == {"uri": str(rows.resolve())}


def test_a_wikisql_question_that_names_no_column_has_only_one_it_can_mean() -> None:
    """A condition may give its value only ("on March 3", "for Ana Silva"), as the public data's
    questions do, only where no other column of the table holds values of that kind: with a
    jockey and a trainer, "for Ana Silva" does not say which, and a row whose SQL the question
    does not determine is noise to learn from and to score against."""
    import random

    from tunekit import synthetic_wikisql
    from tunekit.lexicon import WIKI_TABLES

    kinds = {tuple(c[0] for c in table): {c[0]: c[2] for c in table} for table in WIKI_TABLES}
    rng, implied = random.Random(7), 0
    for _ in range(3000):
        row = synthetic_wikisql.generate_row(rng)
        names = tuple(re.findall(r"(\w+) VARCHAR", row["context"]))
        question = row["question"].lower()
        for column in re.findall(r"(\w+) (?:=|>|<)", row["answer"].split(" WHERE ")[1]):
            if column.replace("_", " ") in question:
                continue
            implied += 1
            assert names in kinds, row  # a made-up table's column is always named
            kind = kinds[names][column]
            assert list(kinds[names].values()).count(kind) == 1, row
    assert implied > 100  # values alone are still asked, where they tell the column


def test_everyday_tables_declare_types_as_people_do() -> None:
    """Not every schema says INTEGER and VARCHAR: REAL, TEXT, INT and VARCHAR(n) occur in the
    tables people write (the shipped sets have REAL columns), so the generator's do too."""
    contexts = " ".join(r["context"] for r in generate(3000, seed=3))
    for declared in (" REAL", " TEXT", " INT,", " INT)", " VARCHAR(255)", " INTEGER", " VARCHAR,"):
        assert declared in contexts, declared
