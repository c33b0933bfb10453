"""Evaluation: exact match and execution accuracy, as a library and as a command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunekit.evaluate import evaluate, score
from tunekit.synthetic import generate

ROW = {
    "question": "What is the venue when the opponent is utah jazz and the week is more than 5?",
    "context": "CREATE TABLE game (venue VARCHAR, opponent VARCHAR, week INTEGER)",
    "answer": 'SELECT venue FROM game WHERE opponent = "utah jazz" AND week > 5',
}
ORDERED = {
    "question": "List the 3 venue values with the highest week.",
    "context": "CREATE TABLE game (venue VARCHAR, week INTEGER)",
    "answer": "SELECT venue FROM game ORDER BY week DESC LIMIT 3",
}


@pytest.mark.parametrize(
    ("row", "prediction", "exact", "execution"),
    [
        pytest.param(ROW, ROW["answer"], True, True, id="identical"),
        pytest.param(
            ROW,
            "select VENUE from game where opponent = 'utah jazz'   and week > 5",
            True,
            True,
            id="case-whitespace-quotes",
        ),
        pytest.param(
            ROW,
            'SELECT venue FROM game WHERE week >= 6 AND "utah jazz" = opponent',
            False,
            True,
            id="equivalent-written-differently",
        ),
        pytest.param(
            ROW,
            'SELECT venue FROM game WHERE opponent = "miami heat" AND week > 5',
            False,
            False,
            id="wrong-string-literal",
        ),
        pytest.param(
            ROW,
            'SELECT venue FROM game WHERE opponent = "utah jazz" AND week > 6',
            False,
            False,
            id="wrong-number-literal",
        ),
        pytest.param(
            ROW,
            'SELECT opponent FROM game WHERE opponent = "utah jazz" AND week > 5',
            False,
            False,
            id="wrong-column",
        ),
        pytest.param(
            ROW,
            'SELECT venue FROM game WHERE opponent = "utah jazz"',
            False,
            False,
            id="condition-dropped",
        ),
        pytest.param(ROW, "SELECT venue FROM WHERE AND", False, False, id="syntax-error"),
        pytest.param(ROW, "SELECT venue FROM nowhere", False, False, id="unknown-table"),
        pytest.param(ROW, "", False, False, id="empty"),
        pytest.param(ROW, "the venue is home", False, False, id="not-sql"),
        pytest.param(
            ORDERED, "SELECT venue FROM game ORDER BY week LIMIT 3", False, False, id="wrong-order"
        ),
        pytest.param(
            ORDERED,
            "SELECT venue FROM game ORDER BY week DESC LIMIT 3",
            True,
            True,
            id="same-order",
        ),
    ],
)
def test_scores(row: dict, prediction: str, exact: bool, execution: bool) -> None:
    result = score(row, prediction)
    assert (result.exact, result.execution) == (exact, execution), result


def test_unordered_results_compare_as_multisets() -> None:
    row = {
        "question": "q",
        "context": "CREATE TABLE t (a VARCHAR, b INTEGER)",
        "answer": "SELECT a FROM t WHERE b > 3",
    }
    assert score(row, "SELECT a FROM t WHERE b > 3 ORDER BY a DESC").execution


def test_a_column_its_table_lacks_is_a_wrong_prediction_not_an_error() -> None:
    row = {
        "question": "q",
        "context": "CREATE TABLE a (id INTEGER, x VARCHAR); CREATE TABLE b (id INTEGER, y VARCHAR)",
        "answer": 'SELECT T1.x FROM a AS T1 JOIN b AS T2 ON T1.id = T2.id WHERE T2.y = "v"',
    }
    wrong = 'SELECT T1.x FROM a AS T1 JOIN b AS T2 ON T1.id = T2.id WHERE T1.y = "v"'
    result = score(row, wrong)
    assert not result.execution and "no such column: t1.y" in result.error


def test_predictions_cannot_reach_outside_the_database(tmp_path: Path) -> None:
    target = tmp_path / "x.db"
    attack = f"ATTACH DATABASE '{target}' AS x"
    assert not score(ROW, attack).execution
    assert not target.exists()


def test_gold_answers_score_perfectly_and_shuffled_answers_do_not() -> None:
    rows = generate(300, seed=5)
    gold = evaluate(rows, [r["answer"] for r in rows])
    assert gold["exact_match"] == gold["execution_accuracy"] == 1.0
    shuffled = evaluate(rows, [r["answer"] for r in rows[1:] + rows[:1]])
    assert shuffled["execution_accuracy"] < 0.05
    assert shuffled["n"] == 300


def test_rows_that_cannot_be_judged_are_counted_not_raised() -> None:
    rows = [
        ROW,
        {**ROW, "answer": "SELECT venue FROM WHERE"},
        {**ROW, "context": "CREATE TABLE game (venue VARCHAR"},
        {**ROW, "answer": "SELECT score FROM game"},
    ]
    result = evaluate(rows, [ROW["answer"], ROW["answer"], ROW["answer"], "SELECT 1"])
    assert (result["n"], result["gold_errors"], result["prediction_errors"]) == (4, 3, 0)
    assert result["exact_match"] == result["execution_accuracy"] == 1.0  # of the judged row
    reasons = [s["gold_error"] for s in result["scores"]]
    assert reasons[0] == "" and "field 'answer' does not parse" in reasons[1]
    assert "field 'context' does not parse" in reasons[2]
    assert "field 'answer' failed on SQLite: no such column: score" in reasons[3]


def test_tables_with_constraints_are_filled_around_them() -> None:
    row = {
        "question": "q",
        "context": "CREATE TABLE t (id INTEGER PRIMARY KEY, a VARCHAR UNIQUE)",
        "answer": "SELECT id FROM t WHERE a = 'x'",
    }
    assert score(row, "SELECT t.id FROM t WHERE 'x' = t.a").execution


def test_counts_must_match() -> None:
    with pytest.raises(ValueError, match="1 predictions for 2 rows"):
        evaluate([ROW, ORDERED], ["x"])


def evaluate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunekit.evaluate", *args], capture_output=True, text=True
    )


def test_command_line_on_a_json_array_file(tmp_path: Path) -> None:
    rows = [ROW, ORDERED, {**ROW, "question": "again"}]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    predictions = [
        ROW["answer"],
        "",
        'SELECT venue FROM game WHERE week >= 6 AND opponent = "utah jazz"',
    ]
    (tmp_path / "pred.jsonl").write_text(
        "".join(json.dumps({"prediction": p}) + "\n" for p in predictions)
    )
    done = evaluate_cli(
        "--data", str(tmp_path / "rows.json"), "--predictions", str(tmp_path / "pred.jsonl")
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["n"] == 3
    assert result["exact_match"] == pytest.approx(1 / 3)
    assert result["execution_accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("predictions", "message"),
    [
        ('{"prediction": "SELECT 1"}\n', "1 predictions for 2 rows"),
        ('{"answer": "SELECT 1"}\n{"answer": "x"}\n', "line 1 has no `prediction` field"),
        ("not json\n", "line 1 is not JSON"),
    ],
)
def test_command_line_bad_input(tmp_path: Path, predictions: str, message: str) -> None:
    (tmp_path / "rows.jsonl").write_text(json.dumps(ROW) + "\n" + json.dumps(ORDERED) + "\n")
    (tmp_path / "pred.jsonl").write_text(predictions)
    done = evaluate_cli(
        "--data", str(tmp_path / "rows.jsonl"), "--predictions", str(tmp_path / "pred.jsonl")
    )
    assert done.returncode == 2
    assert message in done.stderr and not done.stdout
