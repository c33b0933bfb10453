"""Schema-constrained decoding: the grammar of a question's SQL (tunekit.grammar), applied in
generation by xgrammar, the one code path of evaluation and every server; and what vLLM on GKE
is sent (the field each vLLM version reads, checked against its source)."""

from __future__ import annotations

import re

import pytest

from tunekit import inference
from tunekit.backends.gke import addons
from tunekit.evaluate import Schema, parse_query
from tunekit.grammar import ContextError, Tables, accepts, question_spans, sql_grammar
from tunekit.server_requests import TUTORIAL, completion_request

CONTEXT = "CREATE TABLE ship (ship_id INTEGER, name VARCHAR, flag VARCHAR, tonnage INTEGER)"
QUESTION = "How many ships sail under the flag of Peru?"


@pytest.mark.parametrize(
    ("sql", "accepted"),
    [
        ('SELECT COUNT(*) FROM ship WHERE flag = "Peru"', True),
        ('SELECT COUNT(*) FROM ship WHERE flag = "peru"', True),  # WikiSQL lower-cases
        ("SELECT name FROM ship ORDER BY tonnage DESC LIMIT 1", True),
        ("SELECT flag, COUNT(*) FROM ship GROUP BY flag HAVING COUNT(*) > 1", True),
        ('SELECT COUNT(*) FROM ship WHERE country = "Peru"', False),  # no such column
        ('SELECT COUNT(*) FROM ships WHERE flag = "Peru"', False),  # no such table
        ('SELECT COUNT(*) FROM ship WHERE flag = "Chile"', False),  # not in the question
        (
            'SELECT COUNT(*) FROM ship WHERE flag = "Peru" AND flag = "Peru" AND flag = "Peru" '
            'AND flag = "Peru"',
            False,
        ),  # repeats are bounded
        ("SELECT name FROM ship LIMIT 5", False),  # the question asks for no five
        ("SELECT name FROM ship; DROP TABLE ship", False),
        ("uestion: COUNT(*)", False),
    ],
)
def test_the_grammar_admits_sql_over_the_context_only(sql: str, accepted: bool) -> None:
    assert accepts(sql_grammar(QUESTION, CONTEXT), sql) is accepted


def test_free_literals_admit_any_short_value_but_no_other_name() -> None:
    grammar = sql_grammar(QUESTION, CONTEXT, free_literals=True)
    assert accepts(grammar, 'SELECT COUNT(*) FROM ship WHERE flag = "Chile"')
    assert accepts(grammar, "SELECT name FROM ship LIMIT 5")
    assert not accepts(grammar, 'SELECT COUNT(*) FROM ship WHERE country = "Chile"')


def test_joins_name_both_tables_columns_through_their_aliases() -> None:
    context = f"{CONTEXT}; CREATE TABLE port (port_id INTEGER, city VARCHAR, ship_id INTEGER)"
    grammar = sql_grammar("Which ships dock in Lima?", context)
    sql = ("SELECT T1.name FROM ship AS T1 JOIN port AS T2 ON T1.ship_id = T2.ship_id "
           'WHERE T2.city = "Lima"')  # fmt: skip
    assert accepts(grammar, sql)
    assert not accepts(grammar, sql.replace("T2.city", "T1.city"))  # ship has no city


def test_literals_are_spans_of_the_question_as_written_or_lower_cased() -> None:
    strings, numbers = question_spans('Tell me the margin for Jul 12, 1992 at "St. Mary\'s" (OHL)?')
    assert {"Jul 12, 1992", "jul 12, 1992", "St. Mary's", "(OHL)", "(ohl)"} <= set(strings)
    assert {"12", "1992", "0", "1"} <= set(numbers)
    assert "2000000" in question_spans("cities with more than 2,000,000 people")[1]
    assert "1000000" in question_spans("downloaded more than a million times")[1]


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        ("", "the context is empty"),
        ("SELECT 1", "statement 1 of the context is not a CREATE TABLE"),
        ("CREATE TABLE t (a INTEGER); DROP TABLE t", "statement 2 of the context is not"),
        ("CREATE TABLE t (a INTEGER", "does not parse"),
        ("CREATE TABLE t (a INTEGER); CREATE TABLE T (b INTEGER)", "creates table T twice"),
        ('CREATE TABLE "my table" (a INTEGER)', "names 'my table'"),
    ],
)
def test_a_context_that_is_not_tables_is_an_error_that_names_it(context: str, problem: str):
    with pytest.raises(ContextError, match=re.escape(problem)):
        Tables.from_context(context)


def test_every_rule_is_one_line() -> None:
    """xgrammar 0.1.18 (vLLM 0.8.5's, in KServe 0.15.2's image) reads a rule that continues on
    the next line as a parse error ("Expect rule name"); its lexer-based parser, which accepts
    it, came with xgrammar 0.1.21 (cpp/grammar_parser.cc `EBNFLexer`)."""
    context = f"{CONTEXT}; CREATE TABLE port (port_id INTEGER, city VARCHAR, ship_id INTEGER)"
    for line in sql_grammar(TUTORIAL["question"], context).splitlines():
        assert re.fullmatch(r"[A-Za-z0-9_]+ ::= .+", line), line


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from tunekit.models import load_base

    model, tokenizer, _ = load_base("tiny-gemma2", models_dir=tmp_path_factory.mktemp("models"))
    return model, tokenizer


def test_constrained_answers_are_sql_over_the_given_tables_free_ones_need_not_be(tiny) -> None:
    """The shipped base, which never learned the task: free, it writes no SQL; constrained,
    every answer parses and names only its context's tables and columns, in one batch with a
    free row."""
    model, tokenizer = tiny
    rows = [
        {"question": QUESTION, "context": CONTEXT},
        {"question": TUTORIAL["question"], "context": TUTORIAL["context"]},
        {
            "question": "Who is the oldest?",
            "context": "CREATE TABLE people (name VARCHAR, age INTEGER)",
        },
    ]
    constrained = inference.generate_sql(
        model, tokenizer, rows, constrained=True, max_new_tokens=64
    )
    for row, sql in zip(rows, constrained, strict=True):
        schema = Schema.from_context(row["context"])
        query = parse_query(sql, schema)
        named = {c.name.lower() for c in query.find_all(__import__("sqlglot").exp.Column)}
        assert named <= schema.names, (sql, named)
    prompts = [inference.build_prompt(r["question"], r["context"]) for r in rows]
    mixed = inference.generate_batch(
        model, tokenizer, prompts, [64] * 3, [0.0] * 3,
        [sql_grammar(rows[0]["question"], rows[0]["context"]), None, None],
    )  # fmt: skip
    assert mixed[0] == constrained[0]  # the grammar of one row holds that row alone
    free = inference.generate_sql(model, tokenizer, rows, max_new_tokens=64)
    assert free[1:] == mixed[1:]
    assert not all(
        accepts(sql_grammar(r["question"], r["context"]), f)
        for r, f in zip(rows, free, strict=True)
    )


def test_a_row_that_stops_at_its_own_limit_leaves_the_others_constrained(tiny) -> None:
    model, tokenizer = tiny
    prompts = [inference.build_prompt(QUESTION, CONTEXT)] * 2
    grammar = sql_grammar(QUESTION, CONTEXT)
    short, full = inference.generate_batch(
        model, tokenizer, prompts, [3, 64], [0.0, 0.0], [grammar] * 2
    )
    assert len(tokenizer(short, add_special_tokens=False)["input_ids"]) <= 3
    assert accepts(grammar, full)


def test_vllm_gets_the_grammar_in_the_field_its_version_reads() -> None:
    """vLLM 0.8.5 (KServe v0.15.2's huggingfaceserver) reads top-level `guided_grammar`
    (vllm/entrypoints/openai/protocol.py CompletionRequest); from 0.11 `structured_outputs:
    {grammar}`, and 0.12 removed `guided_grammar`, which its requests ignore (extra="allow"):
    sent to a new vLLM the old field is answered unconstrained. The installed KServe (v0.21.0)
    runs vLLM 0.24.0 (vllm/entrypoints/openai/completion/protocol.py `structured_outputs`)."""

    old = completion_request(QUESTION, CONTEXT, "m-lora", addons.KSERVE_VLLM["v0.15.2"])
    assert old["guided_grammar"] == sql_grammar(QUESTION, CONTEXT)
    assert "structured_outputs" not in old and old["model"] == "m-lora"
    new = completion_request(QUESTION, CONTEXT, "m-lora", addons.KSERVE_VLLM[addons.KSERVE_VERSION])
    assert new["structured_outputs"] == {"grammar": sql_grammar(QUESTION, CONTEXT)}
    assert "guided_grammar" not in new and new["prompt"].endswith("Answer:")


def test_the_vllm_request_is_for_the_vllm_stage_06_recorded(tmp_path, monkeypatch) -> None:
    """The request's field follows the vLLM that stage 06 deployed, as it recorded it; a record
    from before the kit recorded it (no `vllm_version`) is refused naming what to re-run, not a
    KeyError (or a request in the field of whatever vLLM the kit pins now)."""
    import tunekit
    from tunekit.server_requests import vllm_request

    monkeypatch.setenv("TUNEKIT_RUNS_DIR", str(tmp_path / "runs"))
    run = tunekit.start_run(tmp_path / "run", profile="gke", dry_run=True, project_id="p-1")
    served = {"openai_url": "http://v/openai/v1/completions", "model": "m-lora"}
    run.state.update("serving", {"vllm": {**served, "vllm_version": [0, 8, 5]}})
    assert "guided_grammar" in vllm_request(run, QUESTION, CONTEXT)["body"]
    run.state.update("serving", {"vllm": {**served, "vllm_version": [0, 24, 0]}})
    assert "structured_outputs" in vllm_request(run, QUESTION, CONTEXT)["body"]
    run.state.update("serving", {"vllm": served})  # type: ignore[typeddict-item]
    with pytest.raises(RuntimeError, match=r"no vLLM version.*run stage 06"):
        vllm_request(run, QUESTION, CONTEXT)


@pytest.mark.parametrize(
    ("sql", "accepted"),
    [
        ("SELECT name FROM ship WHERE tonnage > 5000", True),
        ('SELECT name FROM ship WHERE tonnage > "tonnage"', False),  # a number column, a string
        ('SELECT name FROM ship WHERE speed = "fast"', False),  # REAL holds numbers too
        ("SELECT name FROM ship WHERE flag = 5000", True),  # WikiSQL's numbers in VARCHAR
        ('SELECT name FROM ship WHERE flag = "tonnage"', True),
        ('SELECT name FROM ship WHERE built = "5000"', True),  # DATE is text or a number
    ],
)
def test_a_column_declared_numeric_is_compared_with_numbers_only(sql: str, accepted: bool) -> None:
    context = ("CREATE TABLE ship (name VARCHAR, flag TEXT, tonnage INT, speed REAL, "
               "built DATE)")  # fmt: skip
    question = 'Which ships of "fast" tonnage have more than 5000?'
    assert accepts(sql_grammar(question, context), sql) is accepted


def test_a_join_compares_each_side_by_its_own_types() -> None:
    context = ("CREATE TABLE ship (ship_id INTEGER, name VARCHAR); "
               "CREATE TABLE port (port_id INTEGER, city VARCHAR, ship_id INTEGER)")  # fmt: skip
    grammar = sql_grammar("Which ships dock in port 7 of Lima?", context)
    sql = "SELECT T1.name FROM ship AS T1 JOIN port AS T2 ON T1.ship_id = T2.ship_id WHERE "
    assert accepts(grammar, sql + 'T2.city = "Lima" AND T2.port_id = 7')
    assert not accepts(grammar, sql + 'T2.port_id = "Lima"')
    assert accepts(grammar, sql + "T1.name = 7")


def test_a_literal_never_ends_with_a_function_word_behind_punctuation() -> None:
    """ "Iron have?" is no value of "What status does Iron have?": the function word is found
    behind the question mark too."""
    strings, _ = question_spans("What status does Iron have?")
    assert "Iron" in strings
    assert not [s for s in strings if s.lower().endswith(("have?", "have"))]
