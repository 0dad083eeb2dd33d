"""The look-alike filter box: a ``--where``-style condition turned into SQL with ``?`` placeholders.

``vec similar --where`` takes SQL on the ``ccds`` table from the person at the terminal. A browser is not
that person, so the page accepts only a small language and never passes its text on as SQL:

    condition [AND condition]...
    condition := COLUMN OP VALUE | COLUMN [NOT] IN (VALUE, ...) | COLUMN [NOT] LIKE 'pattern'
    OP        := = | == | != | <> | < | <= | > | >=
    VALUE     := a number, or a 'quoted string' ('' inside for a quote)

COLUMN is one of :data:`COLUMNS` (the ``ccds`` metadata a look-alike can be filtered on), written into the
SQL from that list; every VALUE becomes a parameter. Examples: ``filter = 'r'``,
``filter IN ('g', 'r') AND exptime >= 60``, ``ccdname LIKE 'N%'``.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from vecstore.errors import BadInputError
from vecstore.store import CCD_COLUMNS

# The ccds metadata a look-alike can be filtered on: every catalog column but the ids and file locations.
COLUMNS = tuple(c for c in CCD_COLUMNS if c not in ("ccd_id", "path", "hdu"))
_OPERATORS = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![A-Za-z_])"
    r"|(?P<string>'(?:[^']|'')*')"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|<>|!=|==|=|<|>)"
    r"|(?P<punct>[(),]))"
)
MAX_LENGTH = 500


def _tokens(text: str) -> list[tuple[str, str]]:
    out, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise BadInputError(f"filter: cannot read {text[position:].strip()[:30]!r}; {_HELP}")
        kind = match.lastgroup
        out.append((kind, match[kind]))
        position = match.end()
    return out


_HELP = (
    "write conditions like filter = 'r' AND exptime >= 60 (operators = != < <= > >= IN LIKE, joined by AND; "
    f"columns: {', '.join(COLUMNS)})"
)


def compile_filter(text: str | None, available: Collection[str] | None = None) -> tuple[str | None, list]:
    """``(sql, params)`` for ``text`` (None, None-like or blank: no filter). BadInputError says what is
    wrong and what is accepted. ``available``: the columns this store's catalog has (one made before a
    column existed lacks it, and a read-only open does not add it), None for all of :data:`COLUMNS`."""
    if text is None or not text.strip():
        return None, []
    if len(text) > MAX_LENGTH:
        raise BadInputError(f"filter: longer than {MAX_LENGTH} characters")
    tokens = _tokens(text)
    parts: list[str] = []
    params: list = []
    i = 0

    def take(kind: str | None = None, value: str | None = None) -> str:
        nonlocal i
        if i >= len(tokens):
            raise BadInputError(f"filter {text!r}: ends too early; {_HELP}")
        k, v = tokens[i]
        if (kind and k != kind) or (value and v.upper() != value):
            raise BadInputError(f"filter {text!r}: unexpected {v!r}; {_HELP}")
        i += 1
        return v

    def peek_word(word: str) -> bool:
        return i < len(tokens) and tokens[i][0] == "word" and tokens[i][1].upper() == word

    def literal():
        if i >= len(tokens):
            raise BadInputError(f"filter {text!r}: a value is missing at the end; {_HELP}")
        kind, value = tokens[i]
        if kind == "number":
            take()
            return float(value) if any(c in value for c in ".eE") else int(value)
        if kind == "string":
            take()
            return value[1:-1].replace("''", "'")
        raise BadInputError(f"filter {text!r}: expected a number or a 'quoted string', got {value!r}")

    while True:
        column = take("word").lower()
        if column not in COLUMNS:
            raise BadInputError(f"filter: unknown column {column!r}; columns: {', '.join(COLUMNS)}")
        if available is not None and column not in available:
            raise BadInputError(
                f"filter: this store's catalog has no column {column!r} (it was made before vec recorded "
                "it; a command that writes to the store, such as `vec ingest`, adds it, empty for the CCDs "
                "already there)"
            )
        negate = ""
        if peek_word("NOT"):
            take()
            negate = "NOT "
        if peek_word("IN"):
            take()
            take("punct", "(")
            values = [literal()]
            while i < len(tokens) and tokens[i] == ("punct", ","):
                take()
                values.append(literal())
            take("punct", ")")
            parts.append(f'"{column}" {negate}IN ({", ".join("?" for _ in values)})')
            params += values
        elif peek_word("LIKE"):
            take()
            pattern = literal()
            if not isinstance(pattern, str):
                raise BadInputError(f"filter {text!r}: LIKE takes a 'quoted pattern'")
            parts.append(f'"{column}" {negate}LIKE ?')
            params.append(pattern)
        elif negate:
            raise BadInputError(f"filter {text!r}: NOT goes before IN or LIKE; {_HELP}")
        else:
            op = _OPERATORS[take("op")]
            parts.append(f'"{column}" {op} ?')
            params.append(literal())
        if i == len(tokens):
            break
        take("word", "AND")
    return " AND ".join(parts), params
