"""The SQL the kit answers in, as a grammar per request: schema-constrained decoding.

`sql_grammar(question, context)` writes an EBNF grammar (xgrammar's dialect, which vLLM's
structured outputs take too) whose every sentence is one SELECT query over the tables and columns
that `context` creates, in the kit's SQL subset:

    SELECT [DISTINCT] item [, item [, item]]
      FROM table | table AS T1 JOIN table AS T2 ON T1.c = T2.c
      [WHERE comparison ((AND | OR) comparison){0,2}] [GROUP BY column [HAVING COUNT(*) op n]]
      [ORDER BY column-or-aggregate [ASC | DESC]] [LIMIT n]

Identifiers can only be the context's, and a column declared numeric (INTEGER, REAL, ...) is
compared with a number only; a literal is a span of the question (as written or
lower-cased, as the public data's WikiSQL rows write it; numbers also without thousands
separators), yes, no, 0 or 1, or, with `free_literals`, any short string or number; a LIMIT is
1 or a number the question says in digits or words. Repeats are bounded, so an answer cannot
run on. `Constraint` applies such grammars in `generate`, one per batch row (rows without one
are free), on CPU or GPU.

A context that is not CREATE TABLE statements raises ContextError, naming the problem: the
servers answer it with a 4xx.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import sqlglot
from sqlglot import exp

MAX_SPAN_WORDS = 6  # longest question span a string literal may be
MAX_CONDITIONS = 3  # comparisons in a WHERE
MAX_FREE_CHARS = 40  # a free string literal's length (free_literals)
_WORD = re.compile(r"\S+")
_EDGE = "?!.,;:()[]{}\"'`\u201c\u201d\u2018\u2019"  # stripped from a span's ends (quotes too)
_NUMBER = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?|-?\d+(\.\d+)?")
_OPENS, _CLOSES = {")": "(", "]": "["}, {"(": ")", "[": "]"}
# Words a value never ends with, nor starts with but "the" (no literal of the shipped sets or
# the generator does: tests/test_eval_sets.py checks that the grammar admits every gold answer)
FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "on",
        "in",
        "at",
        "for",
        "with",
        "by",
        "to",
        "from",
        "is",
        "was",
        "are",
        "were",
        "when",
        "that",
        "which",
        "who",
        "whose",
        "has",
        "have",
        "had",
        "as",
    ]
)
# Values a question implies without saying them: a yes/no column's ("with a pool")
ALWAYS_STRINGS = ("yes", "no")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# How many rows a question asks for in words ("the three oldest"); round numbers in words
_COUNTS = "one two three four five six seven eight nine ten eleven twelve"
NUMBER_WORDS = {word: n for n, word in enumerate(_COUNTS.split(), 1)}
_SCALES = {"dozen": 12, "hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_LARGE = re.compile(rf"\b(?P<count>a|{'|'.join(NUMBER_WORDS)}) (?P<scale>{'|'.join(_SCALES)})\b")


class ContextError(ValueError):
    """A context that is not CREATE TABLE statements the kit can answer over."""


# Declared types whose columns hold numbers only (SQLite's INTEGER, REAL and NUMERIC affinities
# but BOOLEAN and DATE, which are also written as strings): compared with a number, never with a
# string. WikiSQL's numbers in VARCHAR columns stay free to be either.
_NUMERIC_TYPES = re.compile(r"INT|REAL|FLOA|DOUB|DEC|NUMERIC", re.I)


@dataclass(frozen=True)
class Tables:
    """The context's tables and their columns, names as the context writes them, and which
    columns are declared numeric (INTEGER, REAL, ...)."""

    columns: dict[str, tuple[str, ...]]
    numeric: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_context(cls, context: str) -> Tables:
        """The tables `context` creates; ContextError names what is not a CREATE TABLE."""
        if not context or not context.strip():
            raise ContextError("the context is empty: give CREATE TABLE statements")
        try:
            statements = [s for s in sqlglot.parse(context, read="sqlite") if s is not None]
        except Exception as e:  # sqlglot raises ParseError, TokenError, RecursionError...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ContextError(f"the context does not parse as SQL ({first})") from None
        columns: dict[str, tuple[str, ...]] = {}
        numeric: set[tuple[str, str]] = set()
        for i, statement in enumerate(statements, 1):
            if not (
                isinstance(statement, exp.Create)
                and statement.kind == "TABLE"
                and isinstance(statement.this, exp.Schema)
            ):
                raise ContextError(
                    f"statement {i} of the context is not a CREATE TABLE with columns "
                    f"({statement.sql('sqlite')[:60]!r})"
                )
            table = statement.this.this.name
            definitions = [c for c in statement.this.expressions if isinstance(c, exp.ColumnDef)]
            names = tuple(c.name for c in definitions)
            numeric |= {(table, c.name) for c in definitions if _declared_numeric(c)}
            for name in (table, *names):
                if not _IDENTIFIER.fullmatch(name):
                    raise ContextError(f"the context names {name!r}: the kit answers over "
                                       "names of letters, digits and underscores")  # fmt: skip
            if not names:
                raise ContextError(f"table {table} of the context has no columns")
            if table.lower() in {t.lower() for t in columns}:
                raise ContextError(f"the context creates table {table} twice")
            columns[table] = names
        if not columns:
            raise ContextError("the context has no CREATE TABLE statement")
        return cls(columns, frozenset(numeric))

    def text_columns(self, table: str) -> tuple[str, ...]:
        """`table`'s columns that are not declared numeric."""
        return tuple(c for c in self.columns[table] if (table, c) not in self.numeric)


def _declared_numeric(column: exp.ColumnDef) -> bool:
    kind = column.args.get("kind")
    return kind is not None and bool(_NUMERIC_TYPES.search(kind.sql("sqlite")))


def question_spans(question: str) -> tuple[list[str], list[str]]:
    """The strings and numbers a literal may be: every run of up to MAX_SPAN_WORDS words of
    the question as written and with its ends stripped of punctuation and quotes, each also
    lower-cased and with a last word in the singular (none that starts or ends with a function
    word: `FUNCTION_WORDS`), and yes and no; the question's numbers (also without thousands
    separators), 0 and 1."""
    words = list(_WORD.finditer(question))
    strings: dict[str, None] = {}
    for start in range(len(words)):
        for end in range(start, min(len(words), start + MAX_SPAN_WORDS)):
            raw = question[words[start].start() : words[end].end()]
            for span in (raw, _strip_edges(raw), _strip_edges(raw, keep=".")):
                for variant in (span, span.lower(), span.removesuffix("'s"), _singular(span)):
                    if _may_be_a_value(variant):
                        strings.setdefault(variant, None)
    strings |= dict.fromkeys(ALWAYS_STRINGS)
    numbers = dict.fromkeys(("0", "1"))
    for found in _NUMBER.finditer(question):
        numbers[found.group(0)] = None
        numbers[found.group(0).replace(",", "")] = None
    for found in _LARGE.finditer(question.lower()):  # "a million" -> 1000000
        count = NUMBER_WORDS.get(found["count"], 1)
        numbers[str(count * _SCALES[found["scale"]])] = None
    return list(strings), list(numbers)


def _may_be_a_value(span: str) -> bool:
    """A span that can be a string literal: no quote or backslash in it, no function word at
    its end nor (but "the") at its start: "1st" and "Leeds", never "1st and" or "of Leeds"."""
    words = [word.strip(_EDGE) for word in span.lower().split()]
    if not words or '"' in span or "\\" in span:
        return False
    return words[-1] not in FUNCTION_WORDS and (words[0] == "the" or words[0] not in FUNCTION_WORDS)


def _singular(span: str) -> str:
    """A span whose last word is a plural, singular ("elephants" -> "elephant"): a value a
    question uses as its noun ("How many elephants ...?"); "" for any other."""
    last = span.split()[-1] if span.split() else ""
    if len(last) <= 3 or not last.endswith("s") or last.lower().endswith(("ss", "us", "is")):
        return ""
    if last.endswith("ies"):
        return span[:-3] + "y"
    return span[:-1]


def _strip_edges(span: str, keep: str = "") -> str:
    """`span` without the punctuation and quotes at its ends but those in `keep` ("Jr."); a
    bracket it opens or closes inside stays."""
    edge = "".join(c for c in _EDGE if c not in keep)
    while span and span[-1] in edge and not (span[-1] in ")]" and _OPENS[span[-1]] in span):
        span = span[:-1]
    while span and span[0] in edge and not (span[0] in "([" and _CLOSES[span[0]] in span):
        span = span[1:]
    return span


def _quoted(text: str) -> str:
    return json.dumps(text)  # an EBNF string literal: double quotes, backslash escapes


def _alternatives(options: Sequence[str]) -> str:
    return " | ".join(_quoted(o) for o in options)


def sql_grammar(question: str, context: str, free_literals: bool = False) -> str:
    """The EBNF grammar (root rule `root`) of the kit's SQL over `context`'s tables, with
    literals from `question` (any short literal too with `free_literals`). The answer starts
    with a space, as the prompt ends with "Answer:". ContextError for a bad context."""
    tables = Tables.from_context(context)
    strings, numbers = question_spans(question)
    rules = [
        'root ::= " " query',
        'agg ::= "MIN" | "MAX" | "AVG" | "SUM"',
        'op ::= "=" | "!=" | "<>" | ">=" | "<=" | ">" | "<"',
        'logic ::= " AND " | " OR "',
        'direction ::= " DESC" | " ASC"',
    ]
    free_string = f'[^"\\\\\\n]{{1,{MAX_FREE_CHARS}}}'
    free_number = '"-"? [0-9]{1,9} ("." [0-9]{1,4})?'
    string_options = [_alternatives(strings)] if strings else []
    number_options = [_alternatives(numbers)] if numbers else []
    if free_literals or not strings:
        string_options.append(free_string)
    if free_literals or not numbers:
        number_options.append(free_number)
    counts = {n: None for n in numbers if n.isdigit() and 0 < int(n) <= 1000}
    lowered = question.lower()
    counts |= {str(v): None for w, v in NUMBER_WORDS.items() if re.search(rf"\b{w}\b", lowered)}
    limit = _alternatives(list(counts)) + (" | [1-9] [0-9]{0,2}" if free_literals else "")
    rules.append(f'limit ::= " LIMIT " ({limit})')
    rules.append(f"string ::= {' | '.join(string_options)}")
    rules.append(f"number ::= {' | '.join(number_options)}")
    rules.append('value ::= number | "\\"" string "\\""')
    queries = []
    names = list(tables.columns)
    for t, table in enumerate(names):
        rules.append(f"col{t} ::= {_alternatives(tables.columns[table])}")
        for kind, columns in zip(("text", "num"), _typed(tables, table), strict=True):
            rules += [f"{kind}{t} ::= {_alternatives(columns)}"] if columns else []
        queries.append(f"q{t}")
        typed = _typed_rules(tables, [("", t, table)], f"q{t}", rules)
        rules += _query_rules(f"q{t}", f"col{t}", typed, _quoted(f" FROM {table}"))
    for a, first in enumerate(names):
        for b, second in enumerate(names):
            if a == b:
                continue
            name = f"j{a}_{b}"
            queries.append(name)
            rules.append(f'{name}col ::= "T1." col{a} | "T2." col{b}')
            typed = _typed_rules(tables, [("T1.", a, first), ("T2.", b, second)], name, rules)
            source = _quoted(f" FROM {first} AS T1 JOIN {second} AS T2 ON ")
            rules += _query_rules(name, f"{name}col", typed, f'{source} {name}col " = " {name}col')
    rules.append(f"query ::= {' | '.join(queries)}")
    return "\n".join(rules) + "\n"


def _typed(tables: Tables, table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`table`'s columns that may be compared with a string, and those declared numeric."""
    text = tables.text_columns(table)
    return text, tuple(c for c in tables.columns[table] if c not in text)


def _typed_rules(
    tables: Tables, sides: list[tuple[str, int, str]], name: str, rules: list[str]
) -> tuple[str | None, str | None]:
    """Rules `<name>text` and `<name>num`: the text and the numeric columns of a source's
    tables (`sides`: alias, index, table), appended to `rules`; None for a kind none has."""
    typed: list[str | None] = []
    for k, kind in enumerate(("text", "num")):
        options = [f'"{alias}" {kind}{t}' if alias else f"{kind}{t}"
                   for alias, t, table in sides if _typed(tables, table)[k]]  # fmt: skip
        rules += [f"{name}{kind} ::= {' | '.join(options)}"] if options else []
        typed.append(f"{name}{kind}" if options else None)
    return typed[0], typed[1]


def _query_rules(
    name: str, column: str, typed: tuple[str | None, str | None], source: str
) -> list[str]:
    """A SELECT over one source whose columns are rule `column`; a comparison is a text column
    (`typed[0]`) with any value or a numeric one (`typed[1]`) with a number."""
    text, numeric = typed
    conditions = [f'{text} " " op " " value'] if text else []
    conditions += [f'{numeric} " " op " " number'] if numeric else []
    item = f'{column} | "COUNT(*)" | "COUNT(" "DISTINCT "? {column} ")" | agg "(" {column} ")"'
    key = f'{column} | "COUNT(*)" | agg "(" {column} ")"'
    return [
        f'{name} ::= "SELECT " "DISTINCT "? {name}items {source} {name}where? {name}group? '
        f"{name}order? limit?",
        f'{name}items ::= {name}item (", " {name}item){{0,2}}',
        f"{name}item ::= {item}",
        f'{name}where ::= " WHERE " {name}cond (logic {name}cond){{0,{MAX_CONDITIONS - 1}}}',
        f"{name}cond ::= {' | '.join(conditions)}",
        f'{name}group ::= " GROUP BY " {column} (" HAVING COUNT(*) " op " " number)?',
        f'{name}order ::= " ORDER BY " ({key}) direction?',
    ]


class Grammars:
    """Compiles grammars for one tokenizer (xgrammar), caching the tokenizer's tables."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]):
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids)
        )
        self.vocab_size = vocab_size
        self.compiler = xgr.GrammarCompiler(info, max_threads=1)

    def compile(self, grammar: str) -> Any:
        return self.compiler.compile_grammar(grammar)


@lru_cache(maxsize=4)
def grammars_for(tokenizer: Any, vocab_size: int, stop_token_ids: tuple[int, ...]) -> Grammars:
    """One compiler per tokenizer (building its token tables takes a while for a large vocab)."""
    return Grammars(tokenizer, vocab_size, stop_token_ids)


def accepts(grammar: str, sql: str) -> bool:
    """Whether `sql` (as the model writes it: after the prompt's "Answer:") is a complete
    sentence of `grammar`; checked without a tokenizer."""
    import xgrammar as xgr

    compiled = _byte_compiler().compile_grammar(grammar)
    matcher = xgr.GrammarMatcher(compiled, terminate_without_stop_token=True)
    return matcher.accept_string(" " + sql.strip()) and matcher.is_completed()


@lru_cache(maxsize=1)
def _byte_compiler() -> Any:
    """A compiler over a vocabulary of the 256 single bytes (to check strings, not tokens)."""
    import xgrammar as xgr

    vocab = [bytes([b]).decode("latin-1") for b in range(256)]
    info = xgr.TokenizerInfo(vocab, vocab_type=xgr.VocabType.BYTE_LEVEL)
    return xgr.GrammarCompiler(info, max_threads=1)


class Constraint:
    """A transformers logits processor: row i of the batch may only continue its grammar
    (`compiled[i]`, None: free). A new one per `generate` call.

    Unlike xgrammar's own `contrib.hf.LogitsProcessor`, rows may be free, and a row that has
    stopped (its own length limit: the others go on and it gets padding) is left alone."""

    def __init__(self, compiled: Sequence[Any | None], vocab_size: int):
        import xgrammar as xgr

        self.matchers = [xgr.GrammarMatcher(c) if c is not None else None for c in compiled]
        self.bitmask = xgr.allocate_token_bitmask(len(self.matchers), vocab_size)
        self.vocab_size = vocab_size
        self.started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import xgrammar as xgr

        if self.started:
            for i, matcher in enumerate(self.matchers):
                live = matcher is not None and not matcher.is_terminated()
                if live and not matcher.accept_token(int(input_ids[i, -1])):  # type: ignore[union-attr]
                    self.matchers[i] = None  # padding after the row's own stop
        self.started = True
        rows = [i for i, m in enumerate(self.matchers) if m is not None and not m.is_terminated()]
        for i in rows:
            self.matchers[i].fill_next_token_bitmask(self.bitmask, i)  # type: ignore[union-attr]
        if rows:
            # on a GPU xgrammar's default is a Triton kernel, compiled at first use (a C
            # compiler the serving images do not have); torch's own ops mask on any device
            backend: Literal["cpu", "torch_native"] = (
                "cpu" if scores.device.type == "cpu" else "torch_native"
            )
            xgr.apply_token_bitmask_inplace(
                scores,
                self.bitmask.to(scores.device),
                vocab_size=self.vocab_size,
                indices=rows,
                backend=backend,
            )
        return scores
