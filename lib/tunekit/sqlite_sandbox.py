"""An in-memory SQLite database whose every statement runs under limits (a QueryError names the
one it ran past), and nothing reaches a file: where `tunekit.evaluate` runs a row's context, its
gold answer and a prediction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The limits of one statement (the gold answers of the public dataset take a few hundred steps)
QUERY_STEPS = 2_000_000  # SQLite virtual-machine instructions
QUERY_SECONDS = 1.0  # wall-clock time
VALUE_BYTES = 8 * 1024  # longest string or blob (SQLITE_LIMIT_LENGTH): trim() takes n*m in one call
SQL_BYTES = 64 * 1024  # longest statement or context script (SQLITE_LIMIT_SQL_LENGTH)
RESULT_ROWS = 10_000  # rows fetched
RESULT_BYTES = 16 * 1024 * 1024  # text and blobs fetched
QUERY_CHARS = 20_000  # longest gold answer or prediction that is parsed at all
SQLITE_HEAP_BYTES = 128 * 1024 * 1024  # PRAGMA hard_heap_limit: all of SQLite in this process
PROGRESS_EVERY = 100  # instructions between two looks at the budget (about one row)


class QueryError(Exception):
    """A statement that failed or ran past a limit; the message says which."""


class Database:
    """An in-memory SQLite database whose every statement runs under the limits (a QueryError
    names the one it ran past); no files, no ATTACH, no PRAGMA."""

    def __enter__(self) -> Database:
        self.db = sqlite3.connect(":memory:")
        self.db.execute(f"PRAGMA hard_heap_limit = {SQLITE_HEAP_BYTES}")  # lowers it, never raises
        self.db.execute("PRAGMA temp_store = MEMORY")  # sorts and temporary tables: under the limit
        self.db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, VALUE_BYTES)
        self.db.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, SQL_BYTES)
        self.db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)  # VACUUM INTO attaches its file too
        self.db.set_authorizer(_authorize)
        self.db.set_progress_handler(self._on_progress, PROGRESS_EVERY)
        self._budget(time.monotonic() + QUERY_SECONDS)
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    def script(self, sql: str) -> None:
        with self._limited():
            self.db.executescript(sql)

    def insert(self, statements: list[tuple[str, list[Any]]]) -> None:
        with self._limited():
            for sql, values in statements:
                self.db.execute(sql, values)

    def query(self, sql: str) -> list[tuple]:
        with self._limited():
            rows, size = [], 0
            for row in self.db.execute(sql):
                rows.append(row)
                size += sum(len(v) for v in row if isinstance(v, str | bytes))
                if len(rows) > RESULT_ROWS:
                    raise QueryError(f"returned more than {RESULT_ROWS:,} rows")
                if size > RESULT_BYTES:
                    raise QueryError(f"returned more than {RESULT_BYTES >> 20} MiB")
            return rows

    @contextmanager
    def _limited(self) -> Iterator[None]:
        """A fresh budget for one statement; SQLite's errors as QueryErrors."""
        self._budget(time.monotonic() + QUERY_SECONDS)
        try:
            yield
        except sqlite3.Error as e:
            if self.exceeded:
                raise QueryError(f"stopped at {self.exceeded}") from None
            if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_TOOBIG:
                raise QueryError(
                    f"made a string or blob longer than {VALUE_BYTES:,} bytes"
                ) from None
            raise QueryError(f"failed on SQLite: {e}") from None
        except (ValueError, OverflowError) as e:  # refused by Python's sqlite3 (a NUL in the SQL)
            raise QueryError(f"cannot run on SQLite: {e}") from None
        except MemoryError:  # SQLite out of its heap limit
            raise QueryError(f"ran past the {SQLITE_HEAP_BYTES >> 20} MiB memory limit") from None

    def _budget(self, deadline: float) -> None:
        self.steps, self.deadline, self.exceeded = 0, deadline, ""

    def _on_progress(self) -> int:
        self.steps += PROGRESS_EVERY
        if self.steps > QUERY_STEPS:
            self.exceeded = f"the {QUERY_STEPS:,}-step limit"
        elif time.monotonic() > self.deadline:
            self.exceeded = f"the {QUERY_SECONDS:g} s time limit"
        return 1 if self.exceeded else 0  # non-zero interrupts the statement


_DENIED_ACTIONS = {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH, sqlite3.SQLITE_PRAGMA}
# printf('%.*c', 2147483647, 'x') runs for 13 s in one call (SQLite 3.40), out of the limits' reach
_DENIED_FUNCTIONS = {"printf", "format"}


def _authorize(action: int, arg1: str | None, arg2: str | None, *where: str | None) -> int:
    if action in _DENIED_ACTIONS or (
        action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS
    ):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK
