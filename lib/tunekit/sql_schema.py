"""The tables of a CREATE TABLE context, as the evaluator reads them."""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp


@dataclass
class Schema:
    """Tables and their columns (name -> declared type) from a CREATE TABLE context."""

    tables: dict[str, dict[str, str]]

    @classmethod
    def from_context(cls, context: str) -> Schema:
        tables: dict[str, dict[str, str]] = {}
        for statement in sqlglot.parse(context, read="sqlite"):
            if isinstance(statement, exp.Create) and isinstance(statement.this, exp.Schema):
                name = statement.this.this.name.lower()
                tables[name] = {
                    col.name.lower(): (
                        col.args["kind"].sql("sqlite") if col.args.get("kind") else "TEXT"
                    ).upper()
                    for col in statement.this.expressions
                    if isinstance(col, exp.ColumnDef)
                }
        return cls(tables)

    @property
    def names(self) -> set[str]:
        return set(self.tables) | {c for cols in self.tables.values() for c in cols}
