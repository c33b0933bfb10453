"""The evaluator runs SQL that a model (or a dataset) wrote: hostile rows, through the real command.

Each row below once hung the evaluator, filled the memory or crashed it. The command must finish in
seconds, stay small and report every row with its reason.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunekit import sqlite_sandbox
from tunekit.evaluate import score

TABLE = "CREATE TABLE t (a INTEGER, b VARCHAR)"
NEVER_ENDS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
MEMORY_CAP = 2 * 1024**3  # address space of the command: the unfixed one needed 12.7 GB
TIME_LIMIT_S = 20  # the unfixed command ran for ever on the first row

# (what it is, context, gold answer, prediction, the reason the command must report)
HOSTILE = [
    (
        "context: a view over a recursive CTE that never ends, queried by the script",
        f"{TABLE}; CREATE VIEW v AS {NEVER_ENDS}; SELECT count(*) FROM v",
        "SELECT a FROM t",
        "SELECT b FROM t",
        ("gold_error", "field 'context' stopped at the"),
    ),
    (
        "prediction: randomblob of a gigabyte per row",
        TABLE,
        "SELECT a FROM t",
        "SELECT randomblob(999999999) FROM t",
        ("error", "a string or blob longer than"),
    ),
    (
        "prediction: zeroblob of a gigabyte per row",
        TABLE,
        "SELECT a FROM t",
        "SELECT zeroblob(999999999) FROM t",
        ("error", "a string or blob longer than"),
    ),
    (
        "prediction: replace() squares a string",
        TABLE,
        "SELECT a FROM t",
        "SELECT replace(hex(zeroblob(10000)), '0', hex(zeroblob(10000))) FROM t",
        ("error", "a string or blob longer than"),
    ),
    (
        "prediction: printf pads to a gigabyte",
        TABLE,
        "SELECT a FROM t",
        "SELECT printf('%.*c', 999999999, 'x') FROM t",
        ("error", "failed on SQLite: not authorized"),  # one call ran for seconds
    ),
    (
        "prediction: a six-way cross join (3 million rows)",
        TABLE,
        "SELECT a FROM t",
        "SELECT t1.a FROM t AS t1, t AS t2, t AS t3, t AS t4, t AS t5, t AS t6",
        ("error", "returned more than"),
    ),
    (
        "prediction: a recursive CTE of 10**9 rows, counted",
        TABLE,
        "SELECT a FROM t",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
        "SELECT count(*) FROM c",
        ("error", "stopped at the"),
    ),
    (
        "prediction: rows of 8 KB that double at every step (memory within the step limit)",
        TABLE,
        "SELECT a FROM t",
        "WITH RECURSIVE c(x) AS (SELECT randomblob(8000) UNION ALL SELECT x FROM c "
        "UNION ALL SELECT x FROM c) SELECT count(*) FROM c",
        ("error", "MiB memory limit"),
    ),
    (
        "prediction: trim() that compares every character with a long set, 1728 times",
        TABLE,
        "SELECT a FROM t",
        "SELECT trim(replace(hex(zeroblob(4000)), '0', 'a') || x.a, "
        "replace(hex(zeroblob(256)), '0', 'b') || 'a') FROM t AS x, t AS y, t AS z",
        ("error", "s time limit"),
    ),
    (
        "prediction: nested 3000 deep",
        TABLE,
        "SELECT a FROM t",
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        ("error", "unparsable"),
    ),
    (
        "prediction: a number past SQLite's integers",
        TABLE,
        "SELECT a FROM t WHERE a > 1",
        "SELECT a FROM t WHERE a > 99999999999999999999999",
        ("error", ""),  # runs, and is wrong
    ),
    (
        "prediction: many statements",
        TABLE,
        "SELECT a FROM t",
        "SELECT a FROM t; DROP TABLE t; SELECT 1",
        ("error", "not a single SELECT query"),
    ),
    (
        "prediction: ATTACH a file",
        TABLE,
        "SELECT a FROM t",
        "ATTACH DATABASE 'evil.db' AS evil",
        ("error", "not a single SELECT query"),
    ),
    (
        "context: VACUUM INTO a file",
        f"{TABLE}; VACUUM INTO 'evil.db'",
        "SELECT a FROM t",
        "SELECT b FROM t",
        ("gold_error", "field 'context' failed on SQLite"),
    ),
    (
        "context with a NUL character (Python's sqlite3 refuses the script)",
        f"{TABLE};\x00",
        "SELECT a FROM t",
        "SELECT b FROM t",
        ("gold_error", "field 'context' cannot run on SQLite: embedded null character"),
    ),
    (
        "gold answer that does not parse",
        TABLE,
        "SELECT a FROM WHERE",
        "SELECT a FROM t",
        ("gold_error", "field 'answer' does not parse"),
    ),
    (
        "context that does not parse",
        "CREATE TABLE t (a INTEGER",
        "SELECT a FROM t",
        "SELECT b FROM t",
        ("gold_error", "field 'context' does not parse"),
    ),
    (
        "gold answer that never ends",
        TABLE,
        NEVER_ENDS,
        "SELECT a FROM t",
        ("gold_error", "field 'answer' returned more than 10,000 rows"),
    ),
    (
        "a plain row, predicted right in other words",
        TABLE,
        "SELECT a FROM t WHERE b = 'x' AND a > 2",
        "SELECT a FROM t WHERE a >= 3 AND 'x' = b",
        ("error", ""),
    ),
]


# Runs a module as `python -m` does, and writes its own peak resident memory (kB) on exit:
# VmHWM of the process's memory after exec. ru_maxrss would not do: Linux keeps the larger
# peak of the image a process had before it exec'd (the forked pytest process, with torch and
# the models loaded late in a full run: 471 MB reported for a 184 MB command).
PEAK_MEMORY = """
import atexit, runpy, sys
def peak(path):
    status = open("/proc/self/status").read()
    with open(path, "w") as f:
        f.write(status.split("VmHWM:")[1].split()[0])
atexit.register(peak, sys.argv[1])
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def run_limited(module: str, args: list[str], cwd: Path) -> tuple[int, str, str, float, float]:
    """`python -m module args` under the memory cap and the time limit: exit code, stdout,
    stderr, seconds and its peak resident memory in MB."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    out, err, peak = cwd / "stdout", cwd / "stderr", cwd / "peak-kb"
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", PEAK_MEMORY, str(peak), module, *args],
            cwd=cwd, stdout=stdout, stderr=stderr, preexec_fn=cap_memory,
        )  # fmt: skip
        try:
            process.wait(TIME_LIMIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    peak_mb = int(peak.read_text()) / 1024 if peak.is_file() else float("nan")
    return process.returncode, out.read_text(), err.read_text(), time.monotonic() - started, peak_mb


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/status and RLIMIT_AS are Linux's")
def test_hostile_rows_are_each_reported_in_seconds_and_small_memory(tmp_path: Path) -> None:
    rows = [
        {"question": what, "context": context, "answer": gold}
        for what, context, gold, _, _ in HOSTILE
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "p.jsonl").write_text(
        "".join(json.dumps({"prediction": p}) + "\n" for *_, p, _ in HOSTILE)
    )
    code, stdout, stderr, seconds, peak_mb = run_limited(
        "tunekit.evaluate",
        ["--details", "--data", "rows.jsonl", "--predictions", "p.jsonl"],
        tmp_path,
    )
    assert code == 0, f"exit {code} after {seconds:.0f} s:\n{stderr[-3000:]}"
    result = json.loads(stdout)
    # measured: 2 s and about 180 MB; the bombs took GBs
    assert seconds < 10 and peak_mb < 400, (seconds, peak_mb)
    assert result["n"] == len(HOSTILE)
    for (what, *_, (field, reason)), got in zip(HOSTILE, result["scores"], strict=True):
        assert reason in got[field] if reason else not got["gold_error"], (what, got)
    assert result["gold_errors"] == sum(field == "gold_error" for *_, (field, _) in HOSTILE)
    assert result["execution_accuracy"] == 1 / (len(HOSTILE) - result["gold_errors"])
    assert not (tmp_path / "evil.db").exists()


def steps_of(sql: str) -> int:
    """SQLite instructions `sql` takes on an empty database."""
    import sqlite3

    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    db = sqlite3.connect(":memory:")
    db.set_progress_handler(count, 1)
    db.execute(sql).fetchall()
    db.close()
    return steps


def counting_to(condition: str) -> str:
    """A query that counts from 1 while `condition` holds for x."""
    return f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE {condition}) " + (
        "SELECT count(*) FROM c"
    )


def test_each_query_has_its_own_budget() -> None:
    """A gold answer that uses most of the step limit leaves the prediction its whole limit."""
    per_row = steps_of(counting_to("x < 1001")) / 1000
    n = int(0.7 * sqlite_sandbox.QUERY_STEPS / per_row)  # each query takes 70% of the limit
    row = {"question": "q", "context": TABLE, "answer": counting_to(f"x < {n}")}
    result = score(row, counting_to(f"x <= {n - 1}"))
    assert (result.execution, result.error, result.gold_error) == (True, "", ""), result


def test_a_gold_answer_past_the_limit_is_a_data_error_not_a_wrong_prediction() -> None:
    row = {"question": "q", "context": TABLE, "answer": counting_to("x < 1000000000")}
    result = score(row, "SELECT count(*) FROM t")
    assert not result.execution and not result.error
    assert "field 'answer' stopped at the" in result.gold_error
